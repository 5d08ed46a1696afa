"""Registering a compressed variant: one registered model per (source, target).

Aliases are scoped to one registered model, so a variant per target gets its
own registered model, `<source>.<target>`, and its own `candidate` alias that
release automation can promote independently of other targets.

Idempotent: the key hashes source version, config hash and target. A re-run
with the same key returns the existing version instead of adding one, and so
do concurrent runs: each creates its version (lineage tags in the same call),
then the lowest version carrying the key wins and the others delete their own.
A version without lineage tags (a registration killed half-way) is completed
from its run's tags, or deleted when its key already has a version; it is never
listed as a variant.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from modelpress.components.deep_compress.files import COMPRESSED_FILE
from modelpress.core import artifacts
from modelpress.core.config import FrozenConfig
from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.aliases import set_alias
from modelpress.registry.names import ALIAS_FIX, alias_problem
from modelpress.registry.retry import retrying
from modelpress.registry.source import SourceRef, _ensure_registered_model
from modelpress.registry.store import fluent

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelpress.core.hardware import HardwareTarget

DEFAULT_ALIAS = "candidate"


class VariantConfig(FrozenConfig):
    """The recipe's `variant:` section."""

    alias: str = Field(
        default=DEFAULT_ALIAS,
        description="Alias set on the registered variant (its own registered model per target): letters, digits, "
        "- and _, starting with a letter; MLflow reserves latest and v<N>.",
    )

    move_alias: Literal["newer", "always"] = Field(
        default="newer",
        description="When the alias moves to this run's variant. newer: only when it is newer than the version "
        "the alias names now (built from a later source version, or from the same one and registered later), so "
        "a rerun of an older recipe or a run on an older source leaves it; always: to every passing variant.",
    )

    @field_validator("alias")
    @classmethod
    def _usable(cls, alias: str) -> str:
        if (problem := alias_problem(alias)) is not None:
            raise ValueError(f"{problem}: {ALIAS_FIX}")
        return alias


@dataclass(frozen=True)
class VariantRef:
    name: str
    version: str
    alias: str
    created: bool  # False when an identical earlier registration was reused
    alias_on: str  # the version the alias names after this run (another one when it did not move)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        return f"{self.uri} {alias_phrase(self.alias, self.version, self.alias_on)}"


def alias_phrase(alias: str, version: str, alias_on: str | None) -> str:
    """How `version` stands with `alias` after a run: `@alias`, or where the alias stayed (`point_alias`
    leaves it only on a newer version)."""
    if alias_on == version:
        return f"@{alias}"
    if alias_on is None:
        return f"(@{alias} not set)"
    return f"(@{alias} stays on newer version {alias_on}; variant.move_alias: always moves it)"


def _order(mv: Any) -> tuple[int, int]:
    """Which variant is newer: the later source version first, then the later registration."""
    source = (mv.tags or {}).get(T.SOURCE_VERSION, "")
    return (int(source) if source.isdigit() else 0, int(mv.version))


def point_alias(client: MlflowClient, name: str, config: VariantConfig, mv: Any, action: str) -> str:
    """Move `config.alias` of `name` to version `mv` as its policy allows; returns the version it names after."""
    from mlflow.exceptions import MlflowException

    from modelpress.registry.aliases import get_alias

    held = get_alias(client, name, config.alias)
    if held is not None and held != str(mv.version) and config.move_alias == "newer":
        try:
            if _order(client.get_model_version(name, held)) > _order(mv):
                return held
        except MlflowException:  # the version it names was deleted: move it
            pass
    set_alias(client, name, config.alias, str(mv.version), action)
    return str(mv.version)


def variant_name(source_name: str, target: str) -> str:
    return f"{source_name}.{target}"


def variant_key(source: SourceRef, config_hash: str, target: str) -> str:
    raw = f"{source.name}\n{source.version}\n{config_hash}\n{target}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


# Lineage tags every listed variant carries; a version missing one is incomplete.
LINEAGE = (T.KIND, T.SOURCE_NAME, T.SOURCE_VERSION, T.CHAIN, T.CONFIG_HASH, T.TARGET, T.KEY, T.VERDICT)
FAULT_ENV = "MODELPRESS_FAULT"  # tests only: die at a named point of registration


def has_lineage(tags: dict[str, str] | None) -> bool:
    """Whether a model version's tags make it a complete, listable variant."""
    tags = tags or {}
    return tags.get(T.KIND) == "variant" and all(tags.get(t) for t in LINEAGE)


def model_versions(client: MlflowClient, name: str) -> list[Any]:
    """Every version of `name` (all pages), or [] when the model does not exist yet."""
    from mlflow.exceptions import MlflowException

    out: list[Any] = []
    token = None
    try:
        while True:
            page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
            return []
        raise


def find_variant(client: MlflowClient, name: str, key: str) -> Any | None:
    """The lowest complete version registered under `key`, if any."""
    found = [mv for mv in model_versions(client, name) if has_lineage(mv.tags) and mv.tags.get(T.KEY) == key]
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os._exit(137)  # as abrupt as SIGKILL: no cleanup, no finally blocks


def repair(client: MlflowClient, name: str) -> list[str]:
    """Complete or delete versions that lack lineage tags but whose run says they are ours.

    Returns what was done, one line each. Versions whose run is not a modelpress
    variant run are left alone (and never listed as variants).
    """
    done = []
    for mv in sorted(model_versions(client, name), key=lambda v: int(v.version)):
        if has_lineage(mv.tags) or not mv.run_id:
            continue
        run = client.get_run(mv.run_id)
        run_tags = run.data.tags
        if run_tags.get(T.KIND) != "variant" or not run_tags.get(T.KEY):
            continue
        if find_variant(client, name, run_tags[T.KEY]) is not None:
            retrying(lambda v=mv.version: client.delete_model_version(name, v))
            done.append(f"deleted {name}/{mv.version}: incomplete, and its key already has a version")
            continue
        tags = {k: v for k, v in run_tags.items() if k.startswith(T.PREFIX)}
        tags.update(T.metric_tags(run.data.metrics))
        for k, v in tags.items():
            retrying(lambda k=k, v=v, n=mv.version: client.set_model_version_tag(name, n, k, v))
        done.append(f"completed {name}/{mv.version} from its run {mv.run_id}")
    return done


def model_card(source: SourceRef, target: HardwareTarget, chain: list[str], metrics: dict,
               notes: dict | None = None) -> str:
    def pct(k: str) -> str:
        return f"{metrics[k] * 100:.2f}%" if k in metrics else "n/a"

    size = metrics.get("size_bytes")
    return "\n".join(line for line in
        [
            f"Compressed variant of {source.name} v{source.version} for {target.name} "
            f"({target.description}).",
            f"Chain: {' > '.join(chain)}.",
            _quantized_as((notes or {}).get("quantize")),
            f"Accuracy {pct('accuracy')} (source {pct('source_accuracy')}); "
            f"size {size / 1024:.1f} KiB." if size else "",
            "Registered by modelpress after all gates passed.",
        ] if line
    ).strip()


def _quantized_as(note: dict | None) -> str:
    """What the quantize step actually did (the recipe may override the target's default mode)."""
    settings = (note or {}).get("settings")
    if not settings:
        return ""
    if settings["mode"] == "fp16":
        return "Quantized: float16 weights and activations."
    how = [f"{settings['mode']} int8"]
    types = [f"{role} {settings[key]}" for role, key in (("weights", "weight_type"), ("activations", "activation_type"))
             if settings.get(key)]
    if types:
        how[0] += f" ({', '.join(types)})"
    if settings.get("format"):
        how.append(settings["format"])
    how.append("per-channel" if settings.get("per_channel") else "per-tensor")
    if settings.get("reduce_range"):
        how.append("reduced range")
    if settings["mode"] == "static" and settings.get("calibration_method"):
        how.append(f"{settings['calibration_method']} calibration on {settings.get('calibration_samples')} "
                   f"{settings.get('calibration_split')} samples")
    return f"Quantized: {', '.join(how)}."


def log_variant_run(client: MlflowClient, model_dir: Path, target: HardwareTarget, name: str, version_tags: dict[str, str],
                    metrics: dict[str, float], verdict: dict[str, Any],
                    attachments: dict[str, str] | None) -> tuple[str, Any]:
    """The MLflow run behind a variant: its lineage as run tags (enough to repair the version), metrics, model."""
    import mlflow

    model = artifacts.check_onnx(artifacts.onnx_file(model_dir), "candidate model")
    with fluent(client) as experiment_id, mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{name}",
                                                          tags=T.origin_tags()) as run:
        mlflow.set_tags({k: v for k, v in version_tags.items() if not k.startswith(T.METRIC)})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(verdict, "verdict.json")
        for artifact_name, text in (attachments or {}).items():
            mlflow.log_text(text, artifact_name)
        info = mlflow.onnx.log_model(
            model,
            name="model",
            # Without this MLflow puts CUDA first; the target decides.
            onnx_execution_providers=list(target.execution_providers),
            pip_requirements=["onnxruntime", "onnx", "numpy"],
            # A deep-compressed variant's file sits beside its decoded ONNX model.
            extra_files=[str(p) for p in (Path(model_dir) / artifacts.MANIFEST, Path(model_dir) / COMPRESSED_FILE)
                         if p.is_file()],
            save_as_external_data=False,
            # Named, typed inputs and outputs for pyfunc consumers, and a one-row example to try it with.
            signature=onnx_signature(model),
            input_example=example_input(model),
        )
    return run.info.run_id, info


def _graph_tensors(values: Any) -> list[tuple[str, Any, tuple[int, ...]]]:
    """(name, numpy dtype, shape with -1 for any dimension that is not fixed) of graph inputs or outputs."""
    from onnx import helper

    out = []
    for v in values:
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out.append((v.name, helper.tensor_dtype_to_np_dtype(t.elem_type), shape))
    return out


def _feeds(model: Any) -> list[tuple[str, Any, tuple[int, ...]]]:
    """The graph inputs a caller feeds (older exporters also list initializers as inputs)."""
    initializers = {i.name for i in model.graph.initializer}
    return _graph_tensors(v for v in model.graph.input if v.name not in initializers)


def onnx_signature(model: Any) -> Any:
    """The MLflow signature of an ONNX model, read from its graph (what ONNX Runtime checks feeds against)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(dtype, shape, name) for name, dtype, shape in _feeds(model)]),
        outputs=Schema([TensorSpec(dtype, shape, name) for name, dtype, shape in _graph_tensors(model.graph.output)]),
    )


def example_input(model: Any) -> dict[str, Any]:
    """One all-zero sample per input (every free dimension 1): valid for any model's types and ranks."""
    import numpy as np

    return {name: np.zeros(tuple(1 if d < 0 else d for d in shape), dtype=dtype) for name, dtype, shape in _feeds(model)}


NOTE_TAG_CHARS = 4000


def note_tag(note: Any) -> str:
    """A technique's note as tag JSON that always parses: past the length limit its largest entries are
    replaced, biggest first, by a pointer to the registered model's technique_notes.json, which holds them whole."""
    body = json.dumps(note, sort_keys=True)
    if len(body) <= NOTE_TAG_CHARS or not isinstance(note, dict):
        return body if len(body) <= NOTE_TAG_CHARS else json.dumps({"in": "technique_notes.json"})
    short = dict(note)
    for key in sorted(short, key=lambda k: len(json.dumps(short[k])), reverse=True):
        short[key] = "in technique_notes.json"
        body = json.dumps(short, sort_keys=True)
        if len(body) <= NOTE_TAG_CHARS:
            break
    return body


def technique_tags(notes: dict[str, Any]) -> dict[str, str]:
    """Each technique's own searchable tags, from the notes it left (e.g. modelpress.nas.trial)."""
    from modelpress.core.technique import get_technique, known_techniques

    return {k: v for name in known_techniques() if isinstance(notes.get(name), dict)
            for k, v in get_technique(name).variant_tags(notes[name]).items()}


def register_variant(
    client: MlflowClient,
    *,
    source: SourceRef,
    model_dir: Path,
    target: HardwareTarget,
    chain: list[str],
    config_hash: str,
    metrics: dict[str, float],
    verdict: dict[str, Any],
    pipeline_run_id: str,
    config: VariantConfig | None = None,
    recipe: str | None = None,
    notes: dict[str, Any] | None = None,
    attachments: dict[str, str] | None = None,
    training_run_id: str | None = None,
) -> VariantRef:
    """Register a passing candidate as a version of `<source>.<target>`, or reuse the one with its key.

    `config`: the recipe's variant section (alias and when it moves; default: `candidate`, newer only).
    `recipe`: the recipe's name, tagged on a new version so `variants` tells recipes apart.
    """
    config = config or VariantConfig()
    # MLflow resolves the logged model's models:/m-... URI through its global store.
    with fluent(client):
        if not verdict.get("passed"):
            raise ModelpressError(
                f"refusing to register: the gate verdict did not pass ({verdict.get('reason')})",
                "fix the candidate or relax the gate in the recipe",
            )
        name = variant_name(source.name, target.name)
        key = variant_key(source, config_hash, target.name)
        _ensure_registered_model(client, name, f"modelpress variants of {source.name} for {target.name}")
        repair(client, name)
        existing = find_variant(client, name, key)
        if existing is not None:
            return _reuse(client, name, existing, config, training_run_id)

        version_tags = {
            T.KIND: "variant",
            T.FORMAT: "onnx",
            T.SOURCE_NAME: source.name,
            T.SOURCE_VERSION: source.version,
            T.CHAIN: ">".join(chain),
            T.CONFIG_HASH: config_hash,
            T.TARGET: target.name,
            T.KEY: key,
            T.VERDICT: "passed",
            T.PIPELINE_RUN: pipeline_run_id,
            **T.metric_tags(metrics),
            **{T.NOTE + k: note_tag(v) for k, v in (notes or {}).items()},
            **technique_tags(notes or {}),
        }
        if recipe:
            version_tags[T.RECIPE] = recipe
        if dataset := source.tags.get(T.DATASET):
            version_tags[T.DATASET] = dataset
        if training_run_id:
            version_tags[T.TRAINING_RUN] = training_run_id
        run_id, info = log_variant_run(client, model_dir, target, name, version_tags, metrics, verdict, attachments)
        # Tags go in with the create call, so no version exists without its lineage.
        mv = retrying(lambda: client.create_model_version(
            name, source=info.model_uri, run_id=run_id, tags=version_tags,
            description=model_card(source, target, chain, metrics, notes), model_id=info.model_id,
        ))
        _fault("after_version_created")
        winner = find_variant(client, name, key)
        if winner is not None and int(winner.version) < int(mv.version):
            # A concurrent run with the same key got there first: keep one version.
            retrying(lambda: client.delete_model_version(name, mv.version))
            client.set_tag(run_id, T.VARIANT, f"models:/{name}/{winner.version} (duplicate, deleted)")
            return _reuse(client, name, winner, config, training_run_id)
        alias_on = point_alias(client, name, config, mv, "register")
        if training_run_id:  # and back: the training run names what it produced
            client.set_tag(training_run_id, T.VARIANT, f"models:/{name}/{mv.version}")
        return VariantRef(name, str(mv.version), config.alias, created=True, alias_on=alias_on)


def _reuse(client: MlflowClient, name: str, mv: Any, config: VariantConfig, training_run_id: str | None) -> VariantRef:
    alias_on = point_alias(client, name, config, mv, "reuse")
    if training_run_id:  # a re-run trained again; say which variant already stands for it
        client.set_tag(training_run_id, T.VARIANT, f"models:/{name}/{mv.version} (already registered)")
    return VariantRef(name, str(mv.version), config.alias, created=False, alias_on=alias_on)
