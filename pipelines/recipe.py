"""The recipe: one typed file that says what a pipeline run does.

    source: models:/digits-cnn@champion
    target: cpu-x86-int8
    quantize: {per_channel: true}
    gates:
      - {metric: accuracy, change: {max_degradation: 0.01}}

Every section is a frozen pydantic model that rejects unknown keys. The
same JSON travels into each KFP task, which validates it again, so a
cluster run checks exactly what the CLI checked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from modelpress.components.deep_compress.settings import DeepCompressConfig
from modelpress.components.distill.settings import DistillConfig
from modelpress.components.evaluate.measure import EvaluateConfig
from modelpress.components.prune.settings import PruneConfig
from modelpress.components.quantize.settings import QuantizeConfig
from modelpress.core.config import FrozenConfig, parse_config
from modelpress.core.data_source import DataConfig
from modelpress.core.hardware import parse_target
from modelpress.core.tasks import TaskConfig, default_gates
from modelpress.errors import ModelpressError
from modelpress.registry.uris import parse_model_uri
from modelpress.registry.variants import DEFAULT_ALIAS
from modelpress.validators.data_checks import DataChecksConfig
from modelpress.validators.gates import Gate, gates_for
from modelpress.validators.model_checks import ModelChecksConfig


class VariantConfig(FrozenConfig):
    alias: str = Field(
        default=DEFAULT_ALIAS,
        pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$",
        description="Alias set on the registered variant (its own registered model per target).",
    )


class Recipe(FrozenConfig):
    source: str = Field(
        default="models:/digits-cnn@champion",
        description="Source model in the registry: models:/<name>@<alias> or models:/<name>/<n>.",
    )
    targets: tuple[str, ...] = Field(
        default=("cpu-x86-int8",), min_length=1, max_length=8,
        description="Hardware targets (modelpress targets), one variant each; `target: X` is shorthand for "
        "`targets: [X]`. Resolve, data checks, distill, prune and deep compression run once for all of them.",
    )
    data: DataConfig = Field(
        default_factory=DataConfig,
        description="The data to calibrate, train and evaluate on; default: the source's modelpress.dataset tag.",
    )
    task: TaskConfig = Field(default_factory=TaskConfig, description="How the model's outputs are scored.")
    distill: DistillConfig | None = Field(
        default=None, description="Distill step (the source is the teacher); None: no distillation."
    )
    prune: PruneConfig | None = Field(default=None, description="Prune step; None: no pruning.")
    deep_compress: DeepCompressConfig | None = Field(
        default=None, description="Deep compression (prune, share, Huffman-code); fp32 targets only."
    )
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig, description="Quantize step.")
    data_checks: DataChecksConfig = Field(
        default_factory=DataChecksConfig, description="Great Expectations checks on the dataset, before any step."
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluate step.")
    gates: tuple[Gate, ...] | None = Field(
        default=None, min_length=1, max_length=64,
        description="All must pass to register; None: the task's defaults (classification: accuracy at most "
        "1 point below the source; regression: RMSE at most 5% above; embedding: mean cosine >= 0.98).",
    )
    model_checks: ModelChecksConfig = Field(
        default_factory=ModelChecksConfig,
        description="ONNX checker, the target's own provider, and agreement with the source; fail like gates.",
    )
    variant: VariantConfig = Field(default_factory=VariantConfig, description="How the variant is registered.")
    trust_pickled_source: bool = Field(
        default=False,
        description="Load a source logged as a pickled torch module (mlflow.pytorch before MLflow 3). Unpickling "
        "runs any code the file names, so only for models whose author you trust; recorded on the variant. "
        "torch.export programs, ONNX and modelpress's own models never need it.",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        try:
            parse_model_uri(v)
        except ModelpressError as exc:
            raise ValueError(str(exc)) from None
        return v.strip()

    @model_validator(mode="before")
    @classmethod
    def _one_target(cls, data: Any) -> Any:
        """`target: X` reads as `targets: [X]`."""
        if isinstance(data, dict) and "target" in data:
            data = dict(data)
            one = data.pop("target")
            if one is not None:
                if data.get("targets") is not None:
                    raise ValueError("give `target` or `targets`, not both")
                data["targets"] = [one]
        return data

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        try:
            names = tuple(parse_target(t).name for t in v)
        except ModelpressError as exc:
            raise ValueError(str(exc)) from None
        if len(set(names)) != len(names):
            raise ValueError(f"targets {list(names)} name a target twice")
        return names

    @property
    def target(self) -> str:
        """The one target of a recipe narrowed by `for_target` (each per-target task's view)."""
        if len(self.targets) != 1:
            raise ModelpressError(f"this step runs per target; the recipe has {len(self.targets)}",
                                  "narrow it with Recipe.for_target(name)")
        return self.targets[0]

    def for_target(self, target: str) -> Recipe:
        """The recipe as one target's tasks see it."""
        name = parse_target(target).name
        if name not in self.targets:
            raise ModelpressError(f"target {name} is not one of the recipe's targets ({', '.join(self.targets)})",
                                  "run the pipeline with the targets of its recipe (modelpress compile/submit do)")
        return self.model_copy(update={"targets": (name,)})

    @model_validator(mode="after")
    def _something_to_do(self) -> Recipe:
        quantizing = [t for t in self.targets if parse_target(t).quantization is not None]
        if self.deep_compress is not None:
            if self.prune is not None:
                raise ValueError("deep_compress prunes as its first stage: move the prune settings to "
                                 "deep_compress.prune")
            if quantizing:
                raise ValueError(
                    f"deep_compress stores shared float weights, but target {quantizing[0]} quantizes them "
                    "again; use an fp32 target (cpu-x86-fp32)"
                )
        if not quantizing and self.quantize != QuantizeConfig():
            raise ValueError(f"target {self.targets[0]} is fp32: drop the quantize section")
        fp32 = [t for t in self.targets if t not in quantizing]
        if fp32 and not self.changes_weights():  # an fp32 target: nothing is quantized
            raise ValueError(
                f"target {fp32[0]} is fp32 and there is no distill, prune or deep_compress section, so the "
                "variant would be the source itself; add one, or pick an int8 or fp16 target"
            )
        return self

    @model_validator(mode="after")
    def _gates_can_be_measured(self) -> Recipe:
        """Refuse now, not after the compute, a gate that nothing measures or no gate at all."""
        import difflib

        from modelpress.pipelines.metrics import produced_metrics

        if self.gates is None:
            return self  # each task's default gates measure what that task produces
        produced = produced_metrics(self)
        for gate in self.gates:
            if gate.metric not in produced:
                near = difflib.get_close_matches(gate.metric, sorted(produced), n=3)
                hint = f"did you mean {' or '.join(near)}? " if near else ""
                raise ValueError(
                    f"gate on {gate.metric!r}: no step of this recipe produces that metric; {hint}"
                    "`modelpress metrics --recipe FILE` lists the ones it does"
                )
        for target in self.targets:
            if not gates_for(self.gates, target):
                raise ValueError(f"no gate applies to target {target}: add one without `targets`, or list it")
        return self

    def active_gates(self, task: str, target: str | None = None) -> tuple[Gate, ...]:
        """The gates a candidate for `target` (default: the narrowed recipe's one) must pass, for the run's task."""
        return gates_for(self.gates if self.gates is not None else default_gates(task), target or self.target)

    def check_gates_for(self, task: str, why: str) -> None:
        """Refuse, before any compute, a gate on a metric the run's task does not produce."""
        from modelpress.core.tasks import metrics_of
        from modelpress.pipelines.metrics import produced_metrics

        produced = produced_metrics(self, task)
        for gate in (g for t in self.targets for g in self.active_gates(task, t)):
            if gate.metric not in produced:
                raise ModelpressError(
                    f"gate on {gate.metric!r} cannot be measured: this run's task is {task} ({why})",
                    f"gate on {', '.join(metrics_of(task))} instead, or set task.kind / data.label")

    def changes_weights(self) -> bool:
        """Whether a torch-level step (distill, prune, deep_compress) changes the model before export."""
        return self.distill is not None or self.prune is not None or self.deep_compress is not None

    def torch_sections(self) -> list[str]:
        """The sections that train torch weights, in pipeline order."""
        return [n for n, on in (("distill", self.distill), ("prune", self.prune),
                                ("deep_compress", self.deep_compress), ("quantize.qat", self.quantize.qat))
                if on is not None]

    def quantizes(self) -> bool:
        return parse_target(self.target).quantization is not None

    def config_hash(self) -> str:
        """Hash of what shapes the variant and its acceptance.

        Source version and target are separate parts of the variant key; evaluate and
        data-check settings only change how it is measured, so they are left out.
        """
        body = self.model_dump(mode="json", exclude={"source", "targets", "evaluate", "data_checks",
                                                     "trust_pickled_source"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def chain(self) -> list[str]:
        """The techniques that shape the variant, in order (recorded as lineage)."""
        return (
            (["distill"] if self.distill is not None else [])
            + (["prune"] if self.prune is not None else [])
            + (["deep_compress"] if self.deep_compress is not None else [])
            + (["qat"] if self.quantize.qat is not None else [])
            + ["export_onnx"]
            + (["quantize"] if self.quantizes() else [])
        )

    def to_json(self) -> str:
        return self.model_dump_json()



def load_recipe(path: str | Path | None = None, **overrides: Any) -> Recipe:
    """Read a YAML or JSON recipe (or the defaults) and apply CLI overrides."""
    data: dict[str, Any] = {}
    where = "recipe"
    if path is not None:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ModelpressError(f"recipe file {p} not found", "pass an existing YAML or JSON file")
        where = str(p)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ModelpressError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ModelpressError(f"{p}: the top level must be a mapping of sections")
    if overrides.get("target") is not None:  # --target replaces the recipe's target(s)
        data.pop("targets", None)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(Recipe, data, where)
