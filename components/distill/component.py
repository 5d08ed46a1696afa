from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def distill(
    recipe: str,
    tracking_uri: str,
    source_model: Input[Model],
    dataset: Input[Dataset],
    student: Output[Model],
    metrics: Output[Metrics],
):
    """Train the recipe's student to match the source model (the teacher); pass the source through
    when the recipe has no `distill:`. The training run is logged to MLflow and linked to the variant.
    """
    from modelpress.components.steps import distill_step
    from modelpress.components.task import user_errors

    with user_errors("distill"):
        measured = distill_step(recipe, tracking_uri, source_model.path, dataset.path, student.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
