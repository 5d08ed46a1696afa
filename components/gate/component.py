from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(
    gates: str,
    model_checks: str,
    target: str,
    run: str,
    tracking_uri: str,
    pipeline_run_id: str,
    evaluation: Input[Artifact],
    verdict: Output[Artifact],
    report: Output[Markdown],
) -> bool:
    """Check the gates that apply to `target` and the model checks; write the verdict (JSON) and a report.

    `gates` and `model_checks` are the recipe's sections (gates null: the task's defaults).
    A failed verdict is also logged as an MLflow run (report attached) and nothing is registered;
    a passed one travels to the register step, whose run carries the same report.
    Returns whether everything passed; the register step runs only under dsl.If on it.
    """
    from modelpress.components.gate.step import gate_step
    from modelpress.components.task import user_errors

    with user_errors(f"gate [{target}]"):
        passed = gate_step(gates, model_checks, target, run, evaluation.path, verdict.path, report.path,
                           tracking_uri, pipeline_run_id)
    verdict.metadata["passed"] = passed
    return passed
