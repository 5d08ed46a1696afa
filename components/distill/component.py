from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def distill(
    config: str,
    run: str,
    tracking_uri: str,
    model: Input[Model],
    dataset: Input[Dataset],
    out_model: Output[Model],
    metrics: Output[Metrics],
):
    """Train the recipe's student to match `model` (the teacher); pass it through when `config` is null.

    `config` is the recipe's distill section. The training run is logged to MLflow and linked to the variant.
    """
    from modelpress.components.distill.step import distill_step
    from modelpress.components.task import user_errors

    with user_errors("distill"):
        measured = distill_step(config, run, tracking_uri, model.path, dataset.path, out_model.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
