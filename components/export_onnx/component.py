from kfp import dsl
from kfp.dsl import Input, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_onnx(source_model: Input[Model], onnx_model: Output[Model]):
    """Export a torch model folder to ONNX with a dynamic batch axis (ONNX passes through)."""
    from modelpress.components.export_onnx.step import export_step
    from modelpress.components.task import user_errors

    with user_errors("export_onnx"):
        export_step(source_model.path, onnx_model.path)
