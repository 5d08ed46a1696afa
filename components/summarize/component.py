from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def summarize(
    verdicts: Input[list[Artifact]],
    source: Input[Artifact],
    run: str,
    tracking_uri: str,
    summary: Output[Artifact],
    report: Output[HTML],
):
    """Every target's verdict in one JSON list, in target order (the run's result table), and an HTML
    report of quality, latency and size per target with the Pareto front, attached to each target's MLflow run.
    """
    from modelpress.components.summarize.step import summarize_step
    from modelpress.components.task import user_errors

    with user_errors("summarize"):
        summarize_step([v.path for v in verdicts], summary.path, report.path, source.path, run, tracking_uri)
