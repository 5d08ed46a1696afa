from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def qat(
    recipe: str,
    target: str,
    model: Input[Model],
    baseline: Input[Model],
    dataset: Input[Dataset],
    prepared: Output[Model],
    metrics: Output[Metrics],
):
    """The ONNX model the quantize step gets.

    With `quantize.qat` in the recipe: quantization-aware fine-tuning of the (pruned) torch model
    for static INT8, then an ONNX export. Without it: an export of the pruned model, or, with no
    pruning either, the baseline ONNX unchanged.
    """
    from modelpress.components.steps import qat_step
    from modelpress.components.task import user_errors

    with user_errors(f"qat [{target}]"):
        measured = qat_step(recipe, target, model.path, baseline.path, dataset.path, prepared.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
