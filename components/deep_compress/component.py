from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deep_compress(
    config: str,
    run: str,
    tracking_uri: str,
    model: Input[Model],
    dataset: Input[Dataset],
    out_model: Output[Model],
    metrics: Output[Metrics],
):
    """Deep compression (prune, k-means weight sharing, Huffman coding) of the torch model; pass it through
    when `config` (the deep_compress section) is null. The .mpdc file travels beside the decoded weights.
    """
    from modelpress.components.task import user_errors
    from modelpress.components.technique_step import technique_step

    with user_errors("deep_compress"):
        measured = technique_step("deep_compress", config, model.path, dataset.path, out_model.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
