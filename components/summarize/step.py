"""The summarize step: every target's verdict in one list (the run's table) and the run's Pareto report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelpress.core.progress import say

REPORT_NAME = "pareto_report.html"  # its name where it is attached to MLflow runs


def summarize_step(
    verdict_paths: list[str], summary_out: Path, report_out: Path, source_ref: Path | None = None,
    run_json: str | None = None, tracking_uri: str | None = None,
) -> list[dict[str, Any]]:
    """Every target's verdict (target order), each with the path of its verdict file; the report beside them.

    With the tracking URI, the report is attached to each target's MLflow run: the variant's
    registration run when it passed, the failed-verdict run when it did not.
    """
    from modelpress.components.summarize.pareto import points_from_verdicts, render_report

    rows = [{**json.loads(Path(p).read_text()), "verdict_path": str(p)} for p in verdict_paths]
    rows.sort(key=lambda r: r["target"])
    Path(summary_out).write_text(json.dumps(rows, indent=2))
    passed = [r["target"] for r in rows if r["passed"]]
    say(f"summary: {len(passed)} of {len(rows)} targets passed their gates"
        + (f" ({', '.join(passed)})" if passed else ""))
    ref = json.loads(Path(source_ref).read_text()) if source_ref else None
    name = ref["name"] if ref else None
    title = f"{name} v{ref['version']}: variants per target" if ref else "Variants per target"
    render_report(points_from_verdicts(rows, name), Path(report_out), title, technique_sections(rows))
    say(f"report: quality, latency and size per target, Pareto front marked ({REPORT_NAME})")
    if ref and run_json and tracking_uri:
        _attach(rows, ref, run_json, tracking_uri, Path(report_out))
    return rows


def technique_sections(rows: list[dict[str, Any]]) -> list[str]:
    """What the techniques that ran add to the report (e.g. the NAS front), once: they ran once for all targets."""
    from modelpress.core.technique import get_technique, known_techniques

    notes = next((r["evaluation"].get("notes", {}) for r in rows), {})
    return [html for name in known_techniques() if isinstance(notes.get(name), dict)
            and (html := get_technique(name).report_section(notes[name]))]


def _attach(rows: list[dict[str, Any]], ref: dict[str, Any], run_json: str, tracking_uri: str, report: Path) -> None:
    import shutil
    import tempfile

    from modelpress.core.run_context import parse_run
    from modelpress.registry.source import SourceRef
    from modelpress.registry.store import connect
    from modelpress.registry.variants import find_variant, variant_key, variant_name

    client = connect(tracking_uri)
    run = parse_run(run_json)
    source = SourceRef(**ref)
    with tempfile.TemporaryDirectory(prefix="modelpress-report-") as tmp:
        named = Path(tmp) / REPORT_NAME
        shutil.copyfile(report, named)
        for row in rows:
            run_id = row.get("mlflow_run_id")
            if row["passed"]:
                mv = find_variant(client, variant_name(source.name, row["target"]),
                                  variant_key(source, run.config_hash, row["target"]))
                run_id = mv.run_id if mv is not None else None
            if run_id:
                client.log_artifact(run_id, str(named))
