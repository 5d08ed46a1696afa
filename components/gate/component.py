from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(
    recipe: str,
    target: str,
    tracking_uri: str,
    pipeline_run_id: str,
    evaluation: Input[Artifact],
    verdict: Output[Artifact],
    report: Output[Markdown],
) -> bool:
    """Check the recipe's gates for `target` and its model checks; write the verdict (JSON) and a report, pass or fail.

    A failed verdict is also logged as an MLflow run (report attached) and nothing is registered;
    a passed one travels to the register step, whose run carries the same report.
    Returns whether everything passed; the register step runs only under dsl.If on it.
    """
    from modelpress.components.steps import gate_step
    from modelpress.components.task import user_errors

    with user_errors(f"gate [{target}]"):
        passed = gate_step(recipe, target, evaluation.path, verdict.path, report.path, tracking_uri, pipeline_run_id)
    verdict.metadata["passed"] = passed
    return passed
