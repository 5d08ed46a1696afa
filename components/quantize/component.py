from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from modelpress.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def quantize(
    config: str,
    target: str,
    model: Input[Model],
    dataset: Input[Dataset],
    baseline: Input[Model],
    evaluate: str,
    gates: str,
    quantized: Output[Model],
    metrics: Output[Metrics],
):
    """Quantize an ONNX model with ONNX Runtime (dynamic/static INT8 or FP16) for one target.

    `config` is the recipe's quantize section; the target's catalog entry sets the defaults it
    overrides. Static mode calibrates on the dataset's training split. fp32 targets pass through.
    With `quantize.tune`, candidates are measured against `baseline` (the source) on the target, with the
    recipe's `evaluate` batch sizes and `gates`, and the best passing one is the output.
    """
    from modelpress.components.quantize.step import quantize_step
    from modelpress.components.task import user_errors

    with user_errors(f"quantize [{target}]"):
        measured = quantize_step(config, target, model.path, dataset.path, quantized.path, baseline=baseline.path,
                                 evaluate_json=evaluate, gates_json=gates)
    for name, value in measured.items():
        metrics.log_metric(name, value)
