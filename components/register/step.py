"""The per-target register step: a passing candidate becomes a version of `<source>.<target>`."""

from __future__ import annotations

import json
from pathlib import Path

from modelpress.core.artifacts import read_notes
from modelpress.core.progress import for_target, say


def register_step(
    config_json: str,
    target: str,
    run_json: str,
    tracking_uri: str,
    source_ref: Path,
    candidate: Path,
    verdict_json: Path,
    report_md: Path | None,
    pipeline_run_id: str,
) -> str:
    from modelpress.components.evaluate.step import flat_metrics
    from modelpress.core.config import parse_config
    from modelpress.core.hardware import parse_target
    from modelpress.core.run_context import parse_run
    from modelpress.registry.source import SourceRef
    from modelpress.registry.store import connect
    from modelpress.registry.variants import VariantConfig, register_variant

    for_target(target)
    config = parse_config(VariantConfig, config_json, "variant")
    run = parse_run(run_json)
    verdict = json.loads(Path(verdict_json).read_text())
    evaluation = verdict["evaluation"]
    notes = read_notes(Path(candidate))
    # Which provider measured what (and what could not be measured here) travels with the variant.
    notes["evaluation_environment"] = evaluation["environment"]
    if "data" in evaluation:  # where the data came from, how it was split, what was scored
        notes["data"] = {"task": evaluation["task"], **evaluation["data"]}
    attachments = {"gate_report.md": Path(report_md).read_text()} if report_md else {}
    ref = register_variant(
        connect(tracking_uri),
        source=SourceRef(**json.loads(Path(source_ref).read_text())),
        model_dir=Path(candidate),
        target=parse_target(target),
        chain=evaluation["chain"],
        config_hash=run.config_hash,
        metrics=flat_metrics(evaluation),
        verdict={k: verdict[k] for k in ("passed", "reason", "results")},
        pipeline_run_id=pipeline_run_id,
        config=config,
        recipe=run.recipe,
        notes=notes,
        attachments=attachments,
        training_run_id=notes.get("distill", {}).get("training_run_id"),
    )
    say(f"{'registered' if ref.created else 'already registered'} {ref.describe()}")
    return ref.uri
