from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(recipe: str, evaluation: Input[Artifact], verdict: Output[Artifact], report: Output[Markdown]) -> bool:
    """Check the recipe's gates; write the verdict (JSON) and a report, pass or fail.

    Returns whether every gate passed; the register step runs only under dsl.If on it.
    """
    from modelpress.components.steps import gate_step
    from modelpress.components.task import user_errors

    with user_errors("gate"):
        passed = gate_step(recipe, evaluation.path, verdict.path, report.path)
    verdict.metadata["passed"] = passed
    return passed
