"""Quantize config (what a recipe may say) and the settings it resolves to.

Every field of `QuantizeConfig` defaults to None, meaning "the hardware
target's default"; a value overrides the target. `settings_for()` merges the two
into `QuantSettings`, where nothing is left unset, and refuses combinations
that cannot serve the target (an fp16 model for an int8 target, say).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import Field

from modelpress.core.config import FrozenConfig
from modelpress.core.hardware import (
    CalibrationMethodName,
    HardwareTarget,
    IntType,
    QuantFormatName,
    QuantMode,
)
from modelpress.errors import ModelpressError


class QATConfig(FrozenConfig):
    epochs: int = Field(default=5, ge=1, le=200, description="Fine-tuning epochs with fake-quantized weights.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Adam learning rate.")
    batch_size: int = Field(default=64, ge=1, le=65536, description="Mini-batch size.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for shuffling.")


class TuneConfig(FrozenConfig):
    """Auto-tune (`quantize.tune`): quantize several ways, measure each on the target, keep the best that passes."""

    objective: Literal["latency", "size"] = Field(
        default="latency", description="What the kept candidate minimises among those passing the gates: latency "
        "on the target's provider at `batch_size` (as a ratio to the source, timed taking turns), or file size. "
        "In a recipe it is the recipe's `objective` (giving both, they must agree).",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=65536, description="Batch latency is timed at; None: the largest evaluate batch size."
    )
    split: Literal["train", "val"] = Field(
        default="val", description="Split the gates are checked on while tuning (never test: the gate step's)."
    )
    latency_runs: int = Field(default=100, ge=5, le=100_000, description="Timed runs per candidate and source.")
    max_candidates: int = Field(default=12, ge=1, le=64, description="Most candidates quantized and measured.")
    float_op_types: bool = Field(
        default=True, description="Also try leaving each quantized compute op type (Conv, MatMul, ...) in float, "
        "for ops whose integer kernels are slower on the target than their float ones.",
    )


class QuantizeConfig(FrozenConfig):
    mode: QuantMode | None = Field(
        default=None, description="dynamic INT8, static INT8 (calibrated), or fp16; None: target's."
    )
    format: QuantFormatName | None = Field(
        default=None, description="Static INT8 format: qdq or qoperator; None: target's."
    )
    weight_type: IntType | None = Field(default=None, description="Weight type; None: target's.")
    activation_type: IntType | None = Field(
        default=None, description="Activation type (static); None: target's."
    )
    per_channel: bool | None = Field(
        default=None, description="Per-output-channel weight scales; None: target's."
    )
    reduce_range: bool | None = Field(
        default=None, description="7-bit weights for CPUs without VNNI; None: target's."
    )
    symmetric_activations: bool | None = Field(
        default=None, description="Zero point 0 for activations; None: target's."
    )
    calibration_method: CalibrationMethodName | None = Field(
        default=None, description="minmax, entropy or percentile; None: target's."
    )
    calibration_split: str = Field(
        default="train", pattern="^(train|val)$",
        description="Split the calibration samples come from; never the test split.",
    )
    calibration_samples: int = Field(
        default=256, ge=1, le=100_000, description="How many samples calibrate activation ranges."
    )
    percentile: float = Field(
        default=99.999, ge=90.0, le=100.0, description="Percentile kept by percentile calibration."
    )
    preprocess: bool = Field(
        default=True, description="Run ONNX Runtime's quantization pre-processing first."
    )
    nodes_to_exclude: tuple[str, ...] = Field(
        default=(), max_length=10_000, description="Node names to keep in float."
    )
    fuse: Literal["none", "bert"] | None = Field(
        default=None, description="Fuse transformer subgraphs (attention, layer norm, GELU) with ONNX Runtime's "
        "transformer optimizer before quantizing, into ops its CPU provider runs: bert (BERT-style encoders) or "
        "none; None: none, and tune tries bert on graphs with attention.",
    )
    float_op_types: tuple[str, ...] = Field(
        default=(), max_length=64, description="Op types to keep in float (e.g. Conv); every other op type ONNX "
        "Runtime can quantize is quantized.",
    )
    qat: QATConfig | None = Field(
        default=None,
        description="Quantization-aware fine-tuning of a torch source before static INT8, for "
        "models whose post-training accuracy falls through the gate; None: post-training only.",
    )
    tune: TuneConfig | None = Field(
        default=None, description="Auto-tune on the target: vary what this section leaves unset, measure each "
        "candidate, keep the best by `tune.objective` among those passing the gates; None: quantize once.",
    )


@dataclass(frozen=True)
class QuantSettings:
    mode: str
    format: str | None
    weight_type: str | None
    activation_type: str | None
    per_channel: bool
    reduce_range: bool
    symmetric_activations: bool
    calibration_method: str | None
    calibration_split: str
    calibration_samples: int
    percentile: float
    preprocess: bool
    nodes_to_exclude: tuple[str, ...]
    float_op_types: tuple[str, ...] = ()
    fuse: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)


def settings_for(config: QuantizeConfig, target: HardwareTarget) -> QuantSettings:
    defaults = target.quantization
    if defaults is None:
        raise ModelpressError(
            f"target {target.name} is {target.precision}: there is nothing to quantize for it",
            "pick an int8 or fp16 target (modelpress targets), or drop the quantize step",
        )
    mode = config.mode or defaults.mode
    wants = "fp16" if mode == "fp16" else "int8"
    if wants != target.precision:
        raise ModelpressError(
            f"target {target.name} wants {target.precision}, but quantize mode {mode} makes {wants}",
            f"drop quantize.mode to use the target's default ({defaults.mode})",
        )

    def pick(name: str):
        value = getattr(config, name)
        return getattr(defaults, name) if value is None else value

    settings = QuantSettings(
        mode=mode,
        format=pick("format") or ("qdq" if mode == "static" else None),
        weight_type=pick("weight_type") or ("qint8" if mode != "fp16" else None),
        activation_type=pick("activation_type") or ("quint8" if mode == "static" else None),
        per_channel=pick("per_channel"),
        reduce_range=pick("reduce_range"),
        symmetric_activations=pick("symmetric_activations"),
        calibration_method=pick("calibration_method") or ("minmax" if mode == "static" else None),
        calibration_split=config.calibration_split,
        calibration_samples=config.calibration_samples,
        percentile=config.percentile,
        preprocess=config.preprocess,
        nodes_to_exclude=config.nodes_to_exclude,
        float_op_types=config.float_op_types,
        fuse=config.fuse or "none",
    )
    if config.qat is not None and mode != "static":
        raise ModelpressError(
            f"quantize.qat prepares weights for static INT8, but the mode is {mode}",
            "set quantize.mode: static (or use a target whose default is static), or drop quantize.qat",
        )
    return settings
