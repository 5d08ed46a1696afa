from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    config: str,
    target: str,
    candidate: Input[Model],
    source: Input[Model],
    dataset: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
):
    """Measure accuracy, agreement, size and latency of candidate and source, side by side on the target.

    `config` is the recipe's evaluate section (batch sizes, latency runs).
    """
    from modelpress.components.evaluate.step import evaluate_step, flat_metrics
    from modelpress.components.task import user_errors

    with user_errors(f"evaluate [{target}]"):
        result = evaluate_step(config, target, candidate.path, source.path, dataset.path, evaluation.path)
    for name, value in flat_metrics(result).items():
        metrics.log_metric(name, value)
