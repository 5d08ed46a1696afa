from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    recipe: str,
    target: str,
    candidate: Input[Model],
    source: Input[Model],
    dataset: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
):
    """Measure accuracy, agreement, size and latency of candidate and source, side by side."""
    from modelpress.components.steps import evaluate_step, flat_metrics
    from modelpress.components.task import user_errors

    with user_errors(f"evaluate [{target}]"):
        result = evaluate_step(recipe, target, candidate.path, source.path, dataset.path, evaluation.path)
    for name, value in flat_metrics(result).items():
        metrics.log_metric(name, value)
