"""Registering a compressed variant: one registered model per (source, target).

Aliases are scoped to one registered model, so a variant per target gets its
own registered model, `<source>.<target>`, and its own `candidate` alias that
release automation can promote independently of other targets.

Idempotent: the key hashes source version, config hash and target. A re-run
with the same key returns the existing version instead of adding one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.deep_compress.files import COMPRESSED_FILE
from modelpress.core import artifacts
from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.source import SourceRef, _ensure_registered_model

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelpress.core.hardware import HardwareTarget

DEFAULT_ALIAS = "candidate"


@dataclass(frozen=True)
class VariantRef:
    name: str
    version: str
    alias: str
    created: bool  # False when an identical earlier registration was reused

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def variant_name(source_name: str, target: str) -> str:
    return f"{source_name}.{target}"


def variant_key(source: SourceRef, config_hash: str, target: str) -> str:
    raw = f"{source.name}\n{source.version}\n{config_hash}\n{target}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def find_variant(client: MlflowClient, name: str, key: str) -> Any | None:
    """The version registered under `key`, if any, complete with lineage tags."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for mv in versions:
        if (mv.tags or {}).get(T.KEY) == key:
            return mv
    return None


def model_card(source: SourceRef, target: HardwareTarget, chain: list[str], metrics: dict) -> str:
    def pct(k: str) -> str:
        return f"{metrics[k] * 100:.2f}%" if k in metrics else "n/a"

    size = metrics.get("size_bytes")
    return "\n".join(
        [
            f"Compressed variant of {source.name} v{source.version} for {target.name} "
            f"({target.description}).",
            f"Chain: {' > '.join(chain)}.",
            f"Accuracy {pct('accuracy')} (source {pct('source_accuracy')}); "
            f"size {size / 1024:.1f} KiB." if size else "",
            "Registered by modelpress after all gates passed.",
        ]
    ).strip()


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
    alias: str = DEFAULT_ALIAS,
    notes: dict[str, Any] | None = None,
    attachments: dict[str, str] | None = None,
    training_run_id: str | None = None,
) -> VariantRef:
    import mlflow

    if not verdict.get("passed"):
        raise ModelpressError(
            f"refusing to register: the gate verdict did not pass ({verdict.get('reason')})",
            "fix the candidate or relax the gate in the recipe",
        )
    name = variant_name(source.name, target.name)
    key = variant_key(source, config_hash, target.name)
    existing = find_variant(client, name, key)
    if existing is not None:
        client.set_registered_model_alias(name, alias, existing.version)
        if training_run_id:  # a re-run trained again; say which variant already stands for it
            client.set_tag(training_run_id, T.VARIANT, f"models:/{name}/{existing.version} (already registered)")
        return VariantRef(name, str(existing.version), alias, created=False)

    onnx_path = artifacts.onnx_file(model_dir)
    model = artifacts.check_onnx(onnx_path, "candidate model")
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
        **{T.METRIC + k: f"{v:.6g}" for k, v in sorted(metrics.items())},
        **{T.NOTE + k: json.dumps(v, sort_keys=True)[:4000] for k, v in (notes or {}).items()},
    }
    if dataset := source.tags.get(T.DATASET):
        version_tags[T.DATASET] = dataset
    if training_run_id:
        version_tags[T.TRAINING_RUN] = training_run_id

    description = model_card(source, target, chain, metrics)
    with mlflow.start_run(run_name=f"register-{name}") as run:
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
        )
    _ensure_registered_model(client, name, f"modelpress variants of {source.name} for {target.name}")
    # Tags go in with the create call, so no version exists without its lineage.
    mv = client.create_model_version(
        name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags,
        description=description, model_id=info.model_id,
    )
    client.set_registered_model_alias(name, alias, mv.version)
    if training_run_id:  # and back: the training run names what it produced
        client.set_tag(training_run_id, T.VARIANT, f"models:/{name}/{mv.version}")
    return VariantRef(name, str(mv.version), alias, created=True)
