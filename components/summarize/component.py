from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def summarize(verdicts: Input[list[Artifact]], summary: Output[Artifact]):
    """Every target's verdict in one JSON list, in target order: the run's result table."""
    from modelpress.components.steps import summarize_step
    from modelpress.components.task import user_errors

    with user_errors("summarize"):
        summarize_step([v.path for v in verdicts], summary.path)
