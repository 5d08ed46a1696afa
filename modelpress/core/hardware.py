"""Hardware targets: one canonical string, backed by `hardware_targets.yaml`.

The same string (for example `cpu-x86-int8`) names the variant in the
registry, tags it, and picks the execution provider and quantization
defaults. An unknown string is an error that lists the known ones.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Literal

from pydantic import Field, model_validator

from modelpress.core.config import FrozenConfig, parse_config
from modelpress.errors import ModelpressError

QuantMode = Literal["dynamic", "static", "fp16"]
QuantFormatName = Literal["qdq", "qoperator"]
IntType = Literal["qint8", "quint8"]
CalibrationMethodName = Literal["minmax", "entropy", "percentile"]


class QuantizationDefaults(FrozenConfig):
    mode: QuantMode = Field(description="dynamic or static INT8, or fp16 conversion.")
    format: QuantFormatName | None = Field(
        default=None, description="Static INT8 graph format: QDQ pairs or QOperator (QLinear*) ops."
    )
    weight_type: IntType | None = Field(default=None, description="Integer type of the weights.")
    activation_type: IntType | None = Field(
        default=None, description="Integer type of activations (static mode)."
    )
    per_channel: bool = Field(default=False, description="One weight scale per output channel.")
    reduce_range: bool = Field(
        default=False, description="7-bit weights; keeps accuracy on x86 CPUs without VNNI."
    )
    symmetric_activations: bool = Field(
        default=False, description="Zero point 0 for activations (TensorRT wants it)."
    )
    calibration_method: CalibrationMethodName | None = Field(
        default=None, description="How static mode picks activation ranges."
    )

    @model_validator(mode="after")
    def _complete(self) -> QuantizationDefaults:
        if self.mode != "fp16" and self.weight_type is None:
            raise ValueError(f"{self.mode} mode needs weight_type")
        if self.mode == "static" and None in (self.format, self.activation_type, self.calibration_method):
            raise ValueError("static mode needs format, activation_type and calibration_method")
        return self


class HardwareTarget(FrozenConfig):
    name: str = Field(description="Canonical target string, e.g. cpu-x86-int8.")
    description: str = Field(description="What hardware this is, for people.")
    execution_providers: tuple[str, ...] = Field(
        min_length=1, description="ONNX Runtime providers, most preferred first."
    )
    precision: Literal["fp32", "fp16", "int8"] = Field(description="Numeric precision of weights.")
    quantization: QuantizationDefaults | None = Field(
        default=None, description="Quantize-step defaults; None where nothing is quantized."
    )
    accelerator: str | None = Field(
        default=None, pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
        description="Kubernetes resource its evaluate task asks for on a cluster (e.g. nvidia.com/gpu); None: "
        "the CPU is the target.",
    )

    @model_validator(mode="after")
    def _coherent(self) -> HardwareTarget:
        q = self.quantization
        if self.precision == "fp32" and q is not None:
            raise ValueError("an fp32 target quantizes nothing")
        if self.precision == "fp16" and (q is None or q.mode != "fp16"):
            raise ValueError("an fp16 target needs quantization mode fp16")
        if self.precision == "int8" and (q is None or q.mode == "fp16"):
            raise ValueError("an int8 target needs quantization mode dynamic or static")
        return self

    @property
    def guards_latency(self) -> bool:
        """CPU INT8: a variant slower than its source fails by default (`validators.gates.latency_guard`)."""
        return self.precision == "int8" and self.provider == "CPUExecutionProvider"

    @property
    def provider(self) -> str:
        """The provider this target is meant for (latency is measured on it)."""
        return self.execution_providers[0]

    def __str__(self) -> str:
        return self.name


@functools.cache
def known_targets() -> dict[str, HardwareTarget]:
    import yaml  # lazy: only commands that touch targets pay for it

    text = resources.files("modelpress.core").joinpath("hardware_targets.yaml").read_text()
    raw = yaml.safe_load(text)
    return {
        name: parse_config(HardwareTarget, {"name": name, **spec}, f"hardware_targets.yaml: {name}")
        for name, spec in raw.items()
    }


def parse_target(text: str) -> HardwareTarget:
    """Parse a target string; case and surrounding space are forgiven, nothing else."""
    key = text.strip().lower()
    known = known_targets()
    if key not in known:
        raise ModelpressError(
            f"unknown hardware target {text!r}",
            f"use one of: {', '.join(sorted(known))}",
        )
    return known[key]
