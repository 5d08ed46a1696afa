"""The per-target gate step: the recipe's gates and model checks on one evaluation, and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from modelpress.core.config import FrozenConfig
from modelpress.core.progress import for_target, say
from modelpress.validators.gates import Gate, active_gates
from modelpress.validators.model_checks import ModelChecksConfig


class GateConfig(FrozenConfig):
    """The gate step's sections of the recipe."""

    gates: tuple[Gate, ...] | None = Field(default=None, description="The recipe's gates; None: the task's defaults.")
    model_checks: ModelChecksConfig = Field(default_factory=ModelChecksConfig, description="The model checks.")

    @classmethod
    def from_sections(cls, gates_json: str, model_checks_json: str) -> GateConfig:
        import json

        from modelpress.core.config import parse_config

        return parse_config(cls, {"gates": json.loads(gates_json), "model_checks": json.loads(model_checks_json)},
                            "gate config")


def gate_step(
    gates_json: str,
    model_checks_json: str,
    target: str,
    run_json: str,
    evaluation_json: Path,
    verdict_out: Path,
    report_out: Path,
    tracking_uri: str | None = None,
    pipeline_run_id: str | None = None,
) -> bool:
    from modelpress.components.evaluate.step import flat_metrics, gate_inputs
    from modelpress.core.run_context import parse_run
    from modelpress.validators.gates import Verdict, check_all, render_markdown
    from modelpress.validators.model_checks import check_model

    for_target(target)
    config = GateConfig.from_sections(gates_json, model_checks_json)
    run = parse_run(run_json)
    evaluation = json.loads(Path(evaluation_json).read_text())
    candidate, baseline = gate_inputs(evaluation)
    gates = active_gates(config.gates, evaluation.get("task", "classification"), target,
                         objective=run.objective, batch=run.latency_batch)
    # The typed checker decides; the Great Expectations cross-check only where the recipe asks (its import
    # alone is most of this step's time).
    results = check_all(gates, candidate, baseline).results
    suite_report = ""
    if config.model_checks.gx_cross_check:
        from modelpress.validators import gate_suite

        suite = gate_suite.validate_metrics(gates, candidate, baseline)
        results, suite_report = gate_suite.combine(results, suite), gate_suite.render_markdown(suite)
    results += check_model(evaluation, config.model_checks)
    verdict = Verdict(passed=all(r.passed for r in results), results=results)
    body = {**verdict.to_dict(), "target": target, "evaluation": evaluation}
    report = render_markdown(verdict, f"Gates for {run.source} on {target}") + suite_report
    Path(report_out).write_text(report)
    if not verdict.passed and tracking_uri:
        from modelpress.registry.runs import log_failed_verdict
        from modelpress.registry.store import connect, ensure_experiment

        client = connect(tracking_uri)
        body["mlflow_run_id"] = log_failed_verdict(
            client, ensure_experiment(client, tracking_uri), source=run.source, target=target,
            config_hash=run.config_hash, chain=evaluation.get("chain", []), metrics=flat_metrics(evaluation),
            verdict=body, report=report, pipeline_run_id=pipeline_run_id)
        say(f"failed verdict logged to MLflow run {body['mlflow_run_id']} (report attached)")
    Path(verdict_out).write_text(json.dumps(body, indent=2))
    say(f"verdict: {'PASSED' if verdict.passed else 'FAILED'} ({verdict.reason})")
    return verdict.passed
