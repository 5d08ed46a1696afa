"""Hardware targets: one canonical string, backed by `hardware_targets.yaml`.

The same string (for example `cpu-x86-int8`) names the variant in the
registry, tags it, and picks the execution provider and quantization
defaults. An unknown string is an error that lists the known ones.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Literal

from pydantic import Field

from modelpress.core.config import FrozenConfig, parse_config
from modelpress.errors import ModelpressError


class QuantizationDefaults(FrozenConfig):
    mode: Literal["dynamic"] = Field(description="Quantization mode ONNX Runtime applies.")
    weight_type: Literal["qint8", "quint8"] = Field(description="Integer type of the weights.")
    per_channel: bool = Field(description="One scale per output channel instead of per tensor.")
    reduce_range: bool = Field(
        description="Quantize weights to 7 bits; keeps accuracy on CPUs without VNNI."
    )


class HardwareTarget(FrozenConfig):
    name: str = Field(description="Canonical target string, e.g. cpu-x86-int8.")
    description: str = Field(description="What hardware this is, for people.")
    execution_providers: tuple[str, ...] = Field(
        min_length=1, description="ONNX Runtime providers, most preferred first."
    )
    precision: Literal["fp32", "fp16", "int8"] = Field(description="Numeric precision of weights.")
    quantization: QuantizationDefaults | None = Field(
        default=None, description="Quantization defaults; None where the target is not int8."
    )

    @property
    def provider(self) -> str:
        """The provider this target is meant for (latency is measured on it)."""
        return self.execution_providers[0]

    def __str__(self) -> str:
        return self.name


@functools.cache
def catalog() -> dict[str, HardwareTarget]:
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
    known = catalog()
    if key not in known:
        raise ModelpressError(
            f"unknown hardware target {text!r}",
            f"use one of: {', '.join(sorted(known))}",
        )
    return known[key]
