from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prune(
    config: str,
    run: str,
    tracking_uri: str,
    model: Input[Model],
    dataset: Input[Dataset],
    out_model: Output[Model],
    metrics: Output[Metrics],
):
    """Magnitude-prune the torch model and fine-tune it; pass it through when `config` (the prune section) is null.

    structured: channels and features are removed, so the model is narrower (params, MACs, latency).
    unstructured: weights are zeroed and stored sparse (file size). heads: attention heads of an encoder.
    """
    from modelpress.components.task import user_errors
    from modelpress.components.technique_step import technique_step

    with user_errors("prune"):
        measured = technique_step("prune", config, model.path, dataset.path, out_model.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
