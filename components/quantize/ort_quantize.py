"""ONNX Runtime quantization, with settings chosen per hardware target.

Only dynamic INT8 lands in this first slice; static INT8, FP16 and QAT come
with the quantization issue. Whatever the mode, the result is checked: a
model in which no node was quantized is refused, never labelled INT8.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from modelpress.core import artifacts
from modelpress.core.config import FrozenConfig
from modelpress.core.data import DatasetSplits
from modelpress.core.hardware import HardwareTarget
from modelpress.core.technique import Result, Technique
from modelpress.errors import ModelpressError

# Ops that only exist in a quantized graph: their presence proves quantization happened.
INTEGER_OPS = frozenset(
    {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
     "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeMatMul", "QGemm"}
)
# Float ops that dynamic quantization could have turned into integer ops.
QUANTIZABLE_FLOAT_OPS = frozenset({"Conv", "MatMul", "Gemm"})


class QuantizeConfig(FrozenConfig):
    mode: Literal["dynamic"] = Field(
        default="dynamic", description="ONNX Runtime quantization mode (dynamic INT8 weights)."
    )
    weight_type: Literal["qint8", "quint8"] | None = Field(
        default=None, description="Weight integer type; None takes the target's default."
    )
    per_channel: bool | None = Field(
        default=None, description="Per-output-channel weight scales; None takes the target's default."
    )
    reduce_range: bool | None = Field(
        default=None,
        description="7-bit weights, for CPUs without VNNI; None takes the target's default.",
    )


class Quantize(Technique):
    name = "quantize"
    Config = QuantizeConfig
    input_format = "onnx"

    def check_target(self, config: QuantizeConfig, target: HardwareTarget) -> None:  # type: ignore[override]
        if target.precision != "int8" or target.quantization is None:
            raise ModelpressError(
                f"target {target.name} wants {target.precision}; quantize {config.mode} makes int8",
                "pick an int8 target (modelpress targets) or drop the quantize step",
            )

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: QuantizeConfig,  # type: ignore[override]
        target: HardwareTarget,
        out_dir: Path,
    ) -> Result:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        self.check_target(config, target)
        defaults = target.quantization
        weight_type = config.weight_type or defaults.weight_type
        per_channel = defaults.per_channel if config.per_channel is None else config.per_channel
        reduce_range = defaults.reduce_range if config.reduce_range is None else config.reduce_range

        manifest = artifacts.read_manifest(model_dir)
        src = artifacts.onnx_file(model_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        dst = out_dir / artifacts.ONNX_FILE
        try:
            quantize_dynamic(
                src,
                dst,
                weight_type=QuantType.QInt8 if weight_type == "qint8" else QuantType.QUInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
            )
        except Exception as exc:
            raise ModelpressError(
                f"ONNX Runtime could not quantize {src.name} ({str(exc).splitlines()[0]})",
                "check the model with `python -m onnx.checker` or use an fp32 target",
            ) from None
        report = node_report(dst)
        if report["quantized_nodes"] == 0:
            dst.unlink()
            raise ModelpressError(
                f"no node of {src.name} was quantized (ops: {report['op_counts']})",
                "this model has no Conv/MatMul ONNX Runtime can quantize; use an fp32 target",
            )
        artifacts.save_onnx(out_dir, dst, manifest.input, dataset=manifest.dataset)
        return Result(
            model_dir=out_dir,
            metrics={
                "size_bytes": float(dst.stat().st_size),
                "source_size_bytes": float(src.stat().st_size),
                "quantized_nodes": float(report["quantized_nodes"]),
                "float_nodes": float(report["float_nodes"]),
            },
            notes={
                "settings": {
                    "mode": config.mode,
                    "weight_type": weight_type,
                    "per_channel": per_channel,
                    "reduce_range": reduce_range,
                },
                **report,
            },
        )


def node_report(path: Path) -> dict:
    """Which nodes ended up integer, and which quantizable ones stayed float."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = Counter(node.op_type for node in graph.node)
    quantized = sum(n for op, n in ops.items() if op in INTEGER_OPS)
    stayed = {op: n for op, n in ops.items() if op in QUANTIZABLE_FLOAT_OPS}
    return {
        "quantized_nodes": quantized,
        "float_nodes": sum(stayed.values()),
        # Dynamic quantization in ONNX Runtime has no integer Gemm: Linear layers stay float.
        "stayed_float": stayed,
        "op_counts": dict(sorted(ops.items())),
    }
