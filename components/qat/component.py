from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def qat(
    config: str,
    target: str,
    model: Input[Model],
    baseline: Input[Model],
    dataset: Input[Dataset],
    prepared: Output[Model],
    metrics: Output[Metrics],
):
    """The ONNX model the quantize step gets, for one target.

    `config` is the recipe's quantize section. With `qat` in it: quantization-aware fine-tuning
    of the (pruned) torch model for the target's INT8 settings, then an ONNX export. Without it:
    an export of the pruned model, or, when nothing changed it, the baseline ONNX unchanged.
    """
    from modelpress.components.qat.step import qat_step
    from modelpress.components.task import user_errors

    with user_errors(f"qat [{target}]"):
        measured = qat_step(config, target, model.path, baseline.path, dataset.path, prepared.path)
    for name, value in measured.items():
        metrics.log_metric(name, value)
