from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deep_compress(
    recipe: str,
    model: Input[Model],
    dataset: Input[Dataset],
    compressed: Output[Model],
    metrics: Output[Metrics],
):
    """Prune, share weights and Huffman-code the torch model (Han et al. 2016); pass it through when
    the recipe has no `deep_compress:`. The output folder holds `model.mpdc` and the decoded weights.
    """
    from modelpress.components.steps import deep_compress_step
    from modelpress.components.task import user_errors

    with user_errors("deep_compress"):
        measured = deep_compress_step(recipe, model.path, dataset.path, compressed.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
