from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def quantize(
    recipe: str,
    target: str,
    model: Input[Model],
    dataset: Input[Dataset],
    quantized: Output[Model],
    metrics: Output[Metrics],
):
    """Quantize an ONNX model with ONNX Runtime (dynamic/static INT8 or FP16) for one of the recipe's targets.

    Static mode calibrates on the dataset's training split. The target's catalog entry sets
    the defaults; the recipe's `quantize:` section overrides them.
    """
    from modelpress.components.steps import quantize_step
    from modelpress.components.task import user_errors

    with user_errors(f"quantize [{target}]"):
        measured = quantize_step(recipe, target, model.path, dataset.path, quantized.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
