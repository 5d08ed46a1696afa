"""The technique interface every compression step implements.

A technique is a name, a typed frozen `Config`, and `apply()`:

    model folder in  ->  apply(model, data, config, target)  ->  model folder + metrics

Techniques register themselves by subclassing. Built-in ones are listed in
`_BUILTIN` by module path and imported only when asked for, so naming a
technique does not import torch or onnxruntime.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelpress.core.config import FrozenConfig, parse_config
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import HardwareTarget

# name -> module that defines it; imported on first use.
_BUILTIN: dict[str, str] = {
    "quantize": "modelpress.components.quantize.ort_quantize",
    "qat": "modelpress.components.qat.qat",
    "prune": "modelpress.components.prune.prune",
    "distill": "modelpress.components.distill.distill",
    "deep_compress": "modelpress.components.deep_compress.deep_compress",
}
_REGISTERED: dict[str, type[Technique]] = {}


@dataclass(frozen=True)
class Result:
    """What a technique returns: where the new model is, and what it measured."""

    model_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    # Facts a person should see (e.g. which nodes stayed in float); tagged on the variant.
    notes: dict[str, Any] = field(default_factory=dict)


class Technique(ABC):
    name: ClassVar[str]
    Config: ClassVar[type[FrozenConfig]]
    # "onnx" or "torch" (a torch-npz catalog model or a torch-export program): what apply() expects.
    input_format: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            _REGISTERED[cls.name] = cls

    def parse_config(self, data: Any) -> FrozenConfig:
        return parse_config(self.Config, data, f"{self.name} config")

    def check_target(self, config: FrozenConfig, target: HardwareTarget) -> None:
        """Raise ModelpressError if this config cannot serve `target`; cheap, runs in preflight."""

    @abstractmethod
    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: FrozenConfig,
        target: HardwareTarget,
        out_dir: Path,
    ) -> Result:
        """Compress the model in `model_dir` for `target`, writing the result to `out_dir`."""


def require_torch(model_dir: Path, step: str) -> None:
    """Refuse an ONNX model in a step that trains torch weights, saying what works instead."""
    from modelpress.core.artifacts import read_manifest

    manifest = read_manifest(model_dir)
    if not manifest.is_torch:
        raise ModelpressError(
            f"{step} trains torch weights, but the model is {manifest.format}",
            "register the source with mlflow.pytorch.log_model (or a transformers flavor), or drop "
            f"{step} from the recipe; quantize works on ONNX as it is",
        )


def known_techniques() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_technique(name: str) -> Technique:
    if name not in _REGISTERED and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTERED:
        raise ModelpressError(
            f"unknown technique {name!r}", f"use one of: {', '.join(known_techniques())}"
        )
    return _REGISTERED[name]()
