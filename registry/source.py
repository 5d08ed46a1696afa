"""Source models: resolve a registry URI, fetch it as a model folder, register one."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.core import artifacts
from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.aliases import set_alias
from modelpress.registry.store import fluent
from modelpress.registry.uris import ModelUri, parse_model_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

PYFUNC_LOADER = "modelpress.models.pyfunc"


@dataclass(frozen=True)
class SourceRef:
    name: str
    version: str
    uri: str  # what the user asked for, e.g. models:/digits-cnn@champion
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _not_found(exc: Exception) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(
        exc
    ).lower()


def resolve_source(client: MlflowClient, uri: str) -> SourceRef:
    """Turn `models:/name@alias` (or `/version`) into a concrete version, or say why not."""
    from mlflow.exceptions import MlflowException

    ref: ModelUri = parse_model_uri(uri)
    where = client._registry_uri  # noqa: SLF001 - only for the message
    try:
        registered = client.get_registered_model(ref.name)
    except MlflowException as exc:
        if _not_found(exc):
            raise ModelpressError(
                f"registered model {ref.name!r} not found in {where}",
                "check the name, or run `modelpress demo` to register the demo model",
            ) from None
        raise
    try:
        if ref.alias:
            mv = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            mv = client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        if ref.alias:
            known = ", ".join(sorted(registered.aliases)) or "none"
            raise ModelpressError(
                f"alias {ref.alias!r} is not set on model {ref.name!r} (aliases: {known})",
                "use an existing alias or a version: models:/<name>/<version>",
            ) from None
        raise ModelpressError(
            f"model {ref.name!r} has no version {ref.version}", "list versions in the MLflow UI"
        ) from None
    return SourceRef(ref.name, str(mv.version), uri, mv.run_id, dict(mv.tags or {}))


def fetch(client: MlflowClient, source: SourceRef, out_dir: Path, trust_pickle: bool = False) -> artifacts.ModelManifest:
    """Download the version and write it to `out_dir` as a modelpress model folder.

    Accepts what modelpress registers (a torch-npz folder under the pyfunc flavor), any
    MLflow ONNX model, and `mlflow.pytorch` models (a pickled one only with `trust_pickle`).
    """
    import mlflow
    import yaml

    with tempfile.TemporaryDirectory(prefix="modelpress-fetch-") as tmp:
        with fluent(client):  # models:/ URIs resolve through MLflow's global registry URI
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source.version_uri, dst_path=tmp))
        mlmodel_path = local / "MLmodel"
        if not mlmodel_path.is_file():
            raise ModelpressError(
                f"{source.version_uri} has no MLmodel file", "register it with an MLflow flavor"
            )
        flavors = (yaml.safe_load(mlmodel_path.read_text()) or {}).get("flavors", {})
        what = f"{source.uri} (version {source.version})"
        dataset = source.tags.get(T.DATASET)
        pyfunc = flavors.get("python_function", {})
        if pyfunc.get("loader_module") == PYFUNC_LOADER:
            data = local / pyfunc["data"]
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(data, out_dir, dirs_exist_ok=True)
            return artifacts.validate_model_dir(out_dir, what)
        if "onnx" in flavors:
            # Weights may lie in external data files beside model.onnx (mlflow.onnx.log_model's default):
            # check_onnx and save_onnx read them from the downloaded folder.
            onnx_path = local / flavors["onnx"]["data"]
            model = artifacts.check_onnx(onnx_path, what)
            _require_batch_axis(model, what)
            artifacts.save_onnx(out_dir, model, dataset=dataset)
            return artifacts.read_manifest(out_dir)
        if "transformers" in flavors or "sentence_transformers" in flavors:
            from modelpress.registry.transformers_source import fetch_transformers

            mlmodel = yaml.safe_load(mlmodel_path.read_text()) or {}
            return fetch_transformers(local, mlmodel, out_dir, what, dataset)
        if "pytorch" in flavors:
            from modelpress.registry.torch_source import fetch_pytorch

            mlmodel = yaml.safe_load(mlmodel_path.read_text()) or {}
            return fetch_pytorch(local, mlmodel, out_dir, what, dataset, trust_pickle)
        raise ModelpressError(
            f"{what} has flavors {sorted(flavors)}; modelpress reads mlflow.pytorch, mlflow.transformers, "
            "mlflow.sentence_transformers, mlflow.onnx and its own format",
            "log the model with mlflow.pytorch.log_model, mlflow.transformers.log_model or mlflow.onnx.log_model",
        )


def _require_batch_axis(model, what: str) -> None:
    """modelpress feeds batches of every size it times; a fixed first axis would refuse them."""
    weights = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in weights and dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            raise ModelpressError(
                f"{what}: ONNX input {value.name!r} has a fixed batch size of {dims[0].dim_value}",
                f"re-export with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={{{value.name!r}: "
                "{0: 'batch'}}))",
            )


def register_source(
    client: MlflowClient,
    name: str,
    model_dir: Path,
    alias: str,
    metrics: dict[str, float],
    description: str,
) -> SourceRef:
    """Log a torch-npz model folder under the pyfunc flavor and register it with `alias`.

    The pyfunc flavor points at `modelpress.models.pyfunc` (a module, not a
    pickle), so `mlflow.pyfunc.load_model` can serve it where modelpress is installed.
    """
    import mlflow

    from modelpress import __version__

    manifest = artifacts.read_manifest(model_dir)
    tags = {T.KIND: "source", T.FORMAT: manifest.format}
    if manifest.dataset:
        tags[T.DATASET] = manifest.dataset
    # MLflow resolves the logged model's models:/m-... URI through its global store, so the whole
    # registration happens with the global URIs pointed at the client's store.
    with fluent(client) as experiment_id:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{name}",
                              tags=T.origin_tags()) as run:
            mlflow.log_metrics(metrics)
            mlflow.log_dict(json.loads(manifest.model_dump_json()), "manifest.json")
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module=PYFUNC_LOADER,
                data_path=str(model_dir),
                pip_requirements=[f"modelpress=={__version__}", "torch==2.13.0", "numpy"],
            )
        _ensure_registered_model(client, name, description)
        mv = client.create_model_version(
            name, source=info.model_uri, run_id=run.info.run_id, tags=tags,
            description=description, model_id=info.model_id,
        )
    set_alias(client, name, alias, str(mv.version), "source")
    return SourceRef(name, str(mv.version), f"models:/{name}@{alias}", run.info.run_id, tags)


def _ensure_registered_model(client: MlflowClient, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
            raise
