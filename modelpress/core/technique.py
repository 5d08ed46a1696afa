"""The technique interface, and the one registry every list of techniques is derived from.

A technique is a name, a typed frozen `Config`, and `apply()`:

    model folder in  ->  apply(model, data, config, target)  ->  model folder + metrics

and it declares, once, everything the rest of modelpress needs to know about it: the recipe
section that holds its config, the model format it takes, whether it changes weights, whether it
runs once or per target, the metrics it produces, what it refuses (`check_target`,
`check_recipe`) and its KFP component. The recipe's sections, the chain recorded as lineage, the
metric list gates are checked against, preflight and the pipeline's steps all read this registry.

Adding a technique: its folder (settings, technique class, component.py) plus one `register()`
line (or one entry in `_MODULES` for a built-in one). Modules are imported on first use, and
technique modules import nothing heavy at the top, so listing techniques stays cheap.
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

# name -> module that defines it, in pipeline order.
_MODULES: dict[str, str] = {
    "nas": "modelpress.components.nas.nas",
    "distill": "modelpress.components.distill.distill",
    "prune": "modelpress.components.prune.prune",
    "deep_compress": "modelpress.components.deep_compress.deep_compress",
    "qat": "modelpress.components.qat.qat",
    "quantize": "modelpress.components.quantize.ort_quantize",
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
    description: ClassVar[str]  # the recipe section's description
    # "torch" (a torch-npz catalog model, a torch-export program or a transformers folder) or "onnx".
    input_format: ClassVar[str]
    # What it hands on; "torch" from any input (distillation trains a torch student from an ONNX teacher).
    output_format: ClassVar[str | None] = None  # None: same as input_format
    per_target: ClassVar[bool] = False  # False: once, before the targets' fan-out (target-independent)
    changes_weights: ClassVar[bool] = True
    # The recipe key holding its config (None: it reads another section, as QAT reads quantize's).
    section: ClassVar[str | None] = None
    section_required: ClassVar[bool] = False  # always present, with defaults (quantize)
    component: ClassVar[str]  # "module:function" of its KFP component
    extra_components: ClassVar[tuple[str, ...]] = ()  # more of its components, when it is several tasks
    cacheable: ClassVar[bool] = True  # False: its step records something a cached result would not
    source_role: ClassVar[str | None] = None  # what the recipe's source is to it, when not the model itself
    METRICS: ClassVar[tuple[str, ...]] = ()  # gateable as <name>_<metric>
    # Pipeline parameters it needs besides its section (name -> type), valued by `parameter_values`.
    pipeline_parameters: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            _REGISTERED[cls.name] = cls

    def parse_config(self, data: Any) -> FrozenConfig:
        return parse_config(self.Config, data, f"{self.section or self.name} config")

    def config_of(self, recipe: Any) -> FrozenConfig | None:
        """This technique's config in `recipe`; None when the recipe does not use it."""
        return getattr(recipe, self.section) if self.section else None

    def applies_to(self, target: HardwareTarget) -> bool:
        """Whether it runs for `target` at all (quantize passes an fp32 target through)."""
        return True

    def metrics(self, config: FrozenConfig) -> tuple[str, ...]:
        """What apply() measures for `config` (without the `<name>_` prefix)."""
        return self.METRICS

    def needs_labels(self, config: FrozenConfig) -> bool:
        """Whether it fine-tunes on class labels (refused up front on regression or embedding runs)."""
        return self.input_format == "torch"

    def check_target(self, config: FrozenConfig, target: HardwareTarget) -> None:
        """Raise ModelpressError if this config cannot serve `target`; cheap, runs when a recipe loads."""

    def check_recipe(self, config: FrozenConfig, recipe: Any) -> None:
        """Raise ModelpressError when this config clashes with another section of `recipe`."""

    def registry_models(self, config: FrozenConfig) -> dict[str, str]:
        """Registry models it reads besides the source (what it is, for messages -> models:/ URI); preflight
        resolves each before any task starts."""
        return {}

    def preflight(self, config: FrozenConfig, tracking_uri: str) -> None:
        """Raise ModelpressError if something the technique reaches outside the registry is down (local runs
        check this before any task starts)."""

    def parameter_values(self, config: FrozenConfig | None) -> dict[str, Any]:
        """Values of `pipeline_parameters` for a recipe whose section is `config` (None: off)."""
        return {}

    def variant_tags(self, note: dict[str, Any]) -> dict[str, str]:
        """Searchable tags for the variant, from the notes this technique left (besides modelpress.note.<name>)."""
        return {}

    def report_section(self, note: dict[str, Any]) -> str | None:
        """An HTML fragment for the run's report, from the notes this technique left (None: nothing to show)."""
        return None

    def pipeline_steps(self, p: dict[str, Any], model: Any, dataset: Any, source: Any) -> Any:
        """Add this target-independent technique's tasks to the pipeline being built; returns its model output.

        `p` holds the pipeline's parameters, `source` the pinned source. One component by default;
        a technique that fans out (nas) adds several.
        """
        step = self.components()[0](
            config=p[self.section], run=p["run"], tracking_uri=p["tracking_uri"], model=model, dataset=dataset)
        step.set_caching_options(self.cacheable)
        return step.outputs["out_model"]

    def components(self) -> list[Any]:
        """Its KFP components (the `@dsl.component` functions), `component` first; imports kfp."""
        out = []
        for spec in (self.component, *self.extra_components):
            module, _, fn = spec.partition(":")
            out.append(getattr(importlib.import_module(module), fn))
        return out

    def training_tasks(self) -> tuple[str, ...]:
        """Names of its tasks that train a network (they get the recipe's `resources.training`). By default its
        one component's task, when it changes weights of a model it can train; kfp names a task after its
        component function, with hyphens."""
        if not self.changes_weights or self.input_format == "onnx":
            return ()
        return (self.component.partition(":")[2].replace("_", "-"),)

    def describe(self, result: Result) -> list[str]:
        """Progress lines after apply(): what changed, in a person's words."""
        return [f"{self.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items())[:8])]

    @abstractmethod
    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: FrozenConfig,
        target: HardwareTarget | None,
        out_dir: Path,
    ) -> Result:
        """Compress the model in `model_dir` (for `target`; None for a target-independent one) into `out_dir`."""


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


def register(name: str, module: str, before: str | None = None) -> None:
    """Add the technique `name`, defined in `module`, to the registry (before `before`, else last)."""
    items = [(k, v) for k, v in _MODULES.items() if k != name]
    at = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(at, (name, module))
    _MODULES.clear()
    _MODULES.update(items)


def unregister(name: str) -> None:
    _MODULES.pop(name, None)


def known_techniques() -> list[str]:
    return list(_MODULES)


def get_technique(name: str) -> Technique:
    if name not in _MODULES:
        raise ModelpressError(f"unknown technique {name!r}", f"use one of: {', '.join(known_techniques())}")
    if name not in _REGISTERED:
        importlib.import_module(_MODULES[name])  # its class registers itself as it is defined
    if name not in _REGISTERED:
        raise ModelpressError(f"technique module {_MODULES[name]} defines no technique named {name!r}",
                              "set the class's `name` to the name it is registered under")
    return _REGISTERED[name]()


def techniques() -> list[Technique]:
    """Every registered technique, in pipeline order."""
    return [get_technique(n) for n in _MODULES]


def chain(names: set[str] | list[str]) -> list[str]:
    """The lineage of a model the techniques `names` shaped: in pipeline order, ONNX export between
    the torch-level ones and the ONNX-level ones."""
    ran = [t for t in techniques() if t.name in set(names)]
    return ([t.name for t in ran if t.input_format != "onnx"] + ["export_onnx"]
            + [t.name for t in ran if t.input_format == "onnx"])


def registry_key() -> tuple[tuple[str, str], ...]:
    """Changes whenever the registry does (what derived models are cached on)."""
    return tuple(_MODULES.items())
