"""The per-target evaluate step: candidate and source measured side by side on the target's provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelpress.core.artifacts import read_notes
from modelpress.core.progress import for_target, say


def chain_of(notes: dict[str, Any]) -> list[str]:
    """The techniques that shaped a candidate, in pipeline order: each one that ran left its notes."""
    from modelpress.core.technique import chain

    return chain(set(notes))


def evaluate_step(config_json: str, target: str, candidate: Path, source: Path, dataset: Path,
                  out_json: Path) -> dict[str, Any]:
    from modelpress.components.evaluate.measure import EvaluateConfig, evaluate
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.validators.model_checks import onnx_checker

    for_target(target)
    config = parse_config(EvaluateConfig, config_json, "evaluate")
    data = DatasetSplits.load(dataset)
    evaluation = evaluate(Path(candidate), Path(source), data, parse_target(target), config, progress=say).to_dict()
    # What was scored and on what data: the gate picks the task's gates, the variant records it.
    evaluation["task"] = data.info.get("task", "classification")
    evaluation["data"] = {k: data.info[k] for k in ("data", "task_reason", "output", "output_reason", "pooling")
                          if k in data.info}
    evaluation["checks"] = {"onnx_checker": onnx_checker(artifacts.onnx_file(Path(candidate)))}
    notes = read_notes(Path(candidate))
    evaluation["chain"] = chain_of(notes)
    evaluation["notes"] = notes  # the verdict carries them to the run's report (Technique.report_section)
    # What earlier techniques measured (params, MACs, the compressed file) is gateable too.
    evaluation["technique"] = {
        f"{name}_{k}": v
        for name, note in notes.items()
        if isinstance(note, dict)
        for k, v in note.get("metrics", {}).items()
    }
    Path(out_json).write_text(json.dumps(evaluation, indent=2))
    return evaluation


def gate_inputs(evaluation: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Candidate metrics (its own, the comparisons, the techniques') and the source's, for the gates."""
    candidate = {**evaluation["candidate"], **evaluation["comparison"], **evaluation.get("technique", {})}
    return candidate, dict(evaluation["source"])


def flat_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """Every number of an evaluation under one flat name (the source's prefixed `source_`)."""
    return {
        **evaluation["candidate"],
        **{f"source_{k}": v for k, v in evaluation["source"].items()},
        **evaluation["comparison"],
        **evaluation.get("technique", {}),
    }
