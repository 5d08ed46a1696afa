"""The recipe: one typed file that says what a pipeline run does.

    source: models:/digits-cnn@champion
    target: cpu-x86-int8
    quantize: {per_channel: true}
    gates:
      - {metric: accuracy, change: {max_degradation: 0.01}}

Every section is a frozen pydantic model that rejects unknown keys. The
technique sections (distill, prune, deep_compress, quantize, ...) come from the
technique registry (`modelpress.core.technique`): `recipe_model()` adds one field
per registered technique to `RecipeBase`. Each KFP task gets only its own section
(`pipelines/arguments.py`), which it validates again.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, create_model, field_validator, model_validator

from modelpress.components.evaluate.measure import EvaluateConfig
from modelpress.core.config import FrozenConfig, parse_config
from modelpress.core.data_source import DataConfig
from modelpress.core.hardware import parse_target
from modelpress.core.tasks import TaskConfig
from modelpress.core.technique import Technique, chain, registry_key, techniques
from modelpress.errors import ModelpressError
from modelpress.pipelines.resources import ResourcesConfig
from modelpress.registry.uris import parse_model_uri
from modelpress.registry.variants import VariantConfig
from modelpress.validators.data_checks import DataChecksConfig
from modelpress.validators.gates import Gate, Objective, active_gates, gates_for
from modelpress.validators.model_checks import ModelChecksConfig

RECIPE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class RecipeBase(FrozenConfig):
    """Everything a recipe says except the techniques' own sections (added by `recipe_model`)."""

    name: str = Field(
        default="default", pattern=RECIPE_NAME,
        description="The recipe's name, tagged on the variants it registers (`modelpress variants` shows it); "
        "default: the recipe file's name without its extension. Not part of the variant key.",
    )
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
    resources: ResourcesConfig = Field(
        default_factory=ResourcesConfig, description="CPU and memory requests and limits of the pipeline's tasks.",
    )
    objective: Objective = Field(
        default="latency",
        description="What the variants are for. latency: on CPU INT8 targets a variant slower than its source at "
        "the largest evaluate batch size fails (unless a gate of yours holds a latency metric), and quantize.tune "
        "keeps the fastest passing candidate. size: no such gate; tune keeps the smallest passing file.",
    )
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

    @model_validator(mode="before")
    @classmethod
    def _one_objective(cls, data: Any) -> Any:
        """quantize.tune optimises the recipe's objective; an objective written in only one place is both."""
        quantize = data.get("quantize") if isinstance(data, dict) else None
        tune = quantize.get("tune") if isinstance(quantize, dict) else None
        if not isinstance(tune, dict):
            return data
        mine, theirs = data.get("objective"), tune.get("objective")
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(f"objective {mine} and quantize.tune.objective {theirs} disagree: keep one "
                             "(the top-level objective also sets the default latency gate)")
        chosen = mine or theirs or "latency"
        return {**data, "objective": chosen, "quantize": {**quantize, "tune": {**tune, "objective": chosen}}}

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

    # ------------------------------------------------------------ derived from the technique registry

    def enabled(self) -> list[tuple[Technique, Any]]:
        """The techniques this recipe uses, with their configs, in pipeline order."""
        return [(t, c) for t in techniques() if (c := t.config_of(self)) is not None]

    @model_validator(mode="after")
    def _techniques_fit(self) -> RecipeBase:
        """Each technique's own refusals: clashes with other sections, and targets it cannot serve."""
        try:
            for technique, config in self.enabled():
                technique.check_recipe(config, self)
                for name in self.targets:
                    target = parse_target(name)
                    if technique.applies_to(target):
                        technique.check_target(config, target)
        except ModelpressError as exc:
            raise ValueError(exc.problem) from None
        return self

    @model_validator(mode="after")
    def _something_to_do(self) -> RecipeBase:
        fp32 = [t for t in self.targets if parse_target(t).quantization is None]
        if len(fp32) == len(self.targets) and self.quantize != type(self.quantize)():
            raise ValueError(f"target {self.targets[0]} is fp32: drop the quantize section")
        if fp32 and not self.changes_weights():  # an fp32 target: nothing is quantized
            raise ValueError(
                f"target {fp32[0]} is fp32 and there is no {self._weight_changers()} section, so the "
                "variant would be the source itself; add one, or pick an int8 or fp16 target"
            )
        return self

    @model_validator(mode="after")
    def _gates_can_be_measured(self) -> RecipeBase:
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

    def latency_batch(self) -> int:
        """The batch size the default latency gate measures at: the evaluate step's largest."""
        return max(self.evaluate.batch_sizes)

    def active_gates(self, task: str, target: str | None = None) -> tuple[Gate, ...]:
        """The gates a candidate for `target` (default: the first) must pass, for the run's task."""
        return active_gates(self.gates, task, target or self.targets[0], objective=self.objective,
                            batch=self.latency_batch())

    def unmeasurable_gates(self) -> dict[str, list[str]]:
        """Per task kind, the gated metrics a run of that task could not measure (resolve refuses those)."""
        from modelpress.core.tasks import TASKS
        from modelpress.pipelines.metrics import produced_metrics

        out = {}
        for task in TASKS:
            produced = produced_metrics(self, task)
            out[task] = sorted({g.metric for t in self.targets for g in self.active_gates(task, t)} - produced)
        return out

    def _weight_changers(self) -> str:
        names = [t.section or t.name for t in techniques() if t.changes_weights and not t.per_target]
        return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)

    def changes_weights(self) -> bool:
        """Whether a target-independent step (distill, prune, deep_compress, ...) changes the model before export."""
        return any(t.changes_weights and not t.per_target for t, _ in self.enabled())

    def needs_torch_source(self) -> list[str]:
        """Sections that need the source itself to be a torch model: none after a step that makes one."""
        steps: list[str] = []
        for t, _ in self.enabled():
            if t.output_format == "torch" and t.input_format != "torch":
                return steps  # e.g. distill: every later torch step trains its student
            if t.input_format == "torch":
                steps.append(t.section or f"quantize.{t.name}")
        return steps

    def needs_labels(self) -> list[str]:
        """Sections that fine-tune on class labels."""
        return [t.section or f"quantize.{t.name}" for t, c in self.enabled() if t.needs_labels(c)]

    def config_hash(self) -> str:
        """Hash of what shapes the variant and its acceptance.

        Source version and target are separate parts of the variant key; evaluate and
        data-check settings only change how it is measured, and the name, the alias and the
        tasks' resources do not change it at all, so they are left out.
        """
        body = self.model_dump(mode="json", exclude={"name", "source", "targets", "evaluate", "data_checks",
                                                     "trust_pickled_source", "resources", "variant"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def chain(self, target: str | None = None) -> list[str]:
        """The techniques that will shape `target`'s variant (default: the first target's), in order.

        The variant records the chain its candidate's notes show (`components/evaluate/step.py`);
        both come from `technique.chain`.
        """
        t = parse_target(target or self.targets[0])
        return chain([tech.name for tech, _ in self.enabled() if tech.applies_to(t)])

    def to_json(self) -> str:
        return self.model_dump_json()


_MODELS: dict[tuple, type[RecipeBase]] = {}


def recipe_model() -> type[RecipeBase]:
    """The recipe class for the techniques registered now: RecipeBase plus one section per technique."""
    key = registry_key()
    if key not in _MODELS:
        fields: dict[str, Any] = {}
        for t in techniques():
            if t.section is None:
                continue
            if t.section_required:
                fields[t.section] = (t.Config, Field(default_factory=t.Config, description=t.description))
            else:
                fields[t.section] = (t.Config | None, Field(default=None, description=t.description))
        _MODELS[key] = create_model("Recipe", __base__=RecipeBase, __doc__=RecipeBase.__doc__, **fields)
    return _MODELS[key]


Recipe = recipe_model()  # the built-in techniques' recipe; load_recipe() follows later registrations


def _unique_keys_loader() -> type:
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeys


def _name_from(path: Path) -> str:
    """A recipe name from its file name: characters a name may not hold become '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)[:64]
    return name if re.fullmatch(RECIPE_NAME, name) else "recipe"


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
            data = yaml.load(p.read_text(), Loader=_unique_keys_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ModelpressError(f"{p}: not valid YAML ({what}{f', line {mark.line + 1}' if mark else ''})",
                                  "fix that line; each key may appear once per mapping") from None
        if data is None:
            raise ModelpressError(f"{p} is empty", "write at least one section (`modelpress config-schema` lists "
                                  "them), or run without --recipe for the defaults")
        if not isinstance(data, dict):
            raise ModelpressError(f"{p}: the top level must be a mapping of sections, not a "
                                  f"{type(data).__name__}", "write `section: value` lines, as in recipes/")
        data.setdefault("name", _name_from(p))
    if overrides.get("target") is not None:  # --target replaces the recipe's target(s)
        data.pop("targets", None)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(recipe_model(), data, where)
