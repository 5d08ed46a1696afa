from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prune(
    recipe: str,
    source_model: Input[Model],
    dataset: Input[Dataset],
    pruned: Output[Model],
    metrics: Output[Metrics],
):
    """Magnitude-prune the torch source and fine-tune it; pass it through when the recipe has no `prune:`.

    structured: channels and features are removed, so the model is narrower (params, MACs, latency).
    unstructured: weights are zeroed and stored sparse (file size).
    """
    from modelpress.components.steps import prune_step
    from modelpress.components.task import user_errors

    with user_errors("prune"):
        measured = prune_step(recipe, source_model.path, dataset.path, pruned.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
