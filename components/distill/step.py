"""The distill step: the generic technique step, plus what only distillation does.

It may fetch its student from the registry (`student.model`), and it logs its training curves
as an MLflow run that the variant links to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from modelpress.components.technique_step import apply_technique, parse_section, record
from modelpress.core.progress import say
from modelpress.core.technique import get_technique


def distill_step(config_json: str, run_json: str, tracking_uri: str, source_in: Path, dataset: Path,
                 model_out: Path) -> dict[str, float]:
    """The student trained on the source (the teacher), or the source itself when distill is off."""
    from modelpress.core.run_context import parse_run
    from modelpress.registry.runs import log_training_run
    from modelpress.registry.store import connect, ensure_experiment

    config = parse_section(get_technique("distill"), config_json)
    if config is None:
        apply_technique("distill", None, source_in, dataset, model_out)
        return {}
    run = parse_run(run_json)
    client = connect(tracking_uri)
    if config.student.model is not None:
        result = _into_registered(client, config, run.trust_pickled_source, source_in, dataset, model_out)
    else:
        result = apply_technique("distill", config, source_in, dataset, model_out)
    history = result.notes.pop("history")
    run_id = log_training_run(
        client, ensure_experiment(client, tracking_uri), technique="distill", source=run.source,
        config_hash=run.config_hash, config=config.model_dump(mode="json"), metrics=result.metrics, history=history)
    metrics = record("distill", source_in, model_out, result, training_run_id=run_id)
    say(f"distill: training run logged to MLflow as {run_id}")
    return metrics


def _into_registered(client: Any, config: Any, trust_pickle: bool, source_in: Path, dataset: Path,
                     model_out: Path) -> Any:
    """Fetch `student.model` from the registry (as the source is fetched), then distill into it."""
    from modelpress.registry import source as src

    uri = config.student.model
    ref = src.resolve_source(client, uri)
    say(f"student: {uri} -> {ref.version_uri}")
    with tempfile.TemporaryDirectory(prefix="modelpress-student-") as tmp:
        src.fetch(client, ref, Path(tmp), trust_pickle=trust_pickle)
        result = apply_technique("distill", config, source_in, dataset, model_out, student_dir=Path(tmp))
    result.notes["student"] = {"model": uri, "version": ref.version_uri}
    return result
