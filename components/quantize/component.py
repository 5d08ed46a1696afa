from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def quantize(recipe: str, model: Input[Model], quantized: Output[Model], metrics: Output[Metrics]):
    """Quantize an ONNX model with ONNX Runtime, using the target's defaults unless overridden."""
    from modelpress.components.steps import quantize_step
    from modelpress.components.task import user_errors

    with user_errors("quantize"):
        measured = quantize_step(recipe, model.path, quantized.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
