from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def toy(
    config: str,
    run: str,
    tracking_uri: str,
    model: Input[Model],
    dataset: Input[Dataset],
    out_model: Output[Model],
    metrics: Output[Metrics],
):
    """Round the model's weights; pass it through when `config` (the toy section) is null."""
    from modelpress.components.task import user_errors
    from modelpress.components.technique_step import technique_step

    with user_errors("toy"):
        measured = technique_step("toy", config, model.path, dataset.path, out_model.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
