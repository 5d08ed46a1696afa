"""Training data named by an MLflow run: a dataset logged with `mlflow.log_input`, as a local file.

Why: teams already record what a model was trained on (`mlflow.log_input(mlflow.data.from_pandas(
df, source=..., name=...), context="training")`). Pointing modelpress at "run X's training input"
instead of a copied path keeps the lineage in MLflow: we read the file that run recorded, and the
provenance returned here (name, digest, source) can go on the compression run.

MLflow stores a dataset's *source* (a type plus a JSON reference such as `{"uri": ...}`), never its
rows, so this downloads the source. Sources with no file behind them (code/notebook, Delta, Spark,
Hugging Face) are refused with a fix rather than half-supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from mlflow import MlflowClient

DATA_SUFFIXES = (".parquet", ".csv", ".npz")
CONTEXT_TAG = "mlflow.data.context"  # what `mlflow.log_input(..., context=...)` sets


def _context(dataset_input: Any) -> str | None:
    return next((t.value for t in dataset_input.tags if t.key == CONTEXT_TAG), None)


def _label(dataset_input: Any) -> str:
    return dataset_input.dataset.name + (f" ({ctx})" if (ctx := _context(dataset_input)) else "")


def fetch_run_input(
    client: MlflowClient, run_id: str, dst: Path, name: str | None = None, context: str | None = None
) -> tuple[Path, dict[str, str | None]]:
    """Download the data behind a dataset logged as an input of `run_id` into `dst`.

    Returns (local file path, provenance dict). `name` and `context` (the `mlflow.data.context` tag)
    select the input; exactly one must match.
    """
    from mlflow.data import get_source
    from mlflow.data.filesystem_dataset_source import FileSystemDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise ModelpressError(f"run {run_id} not found", "set data.run_input.run_id to an existing run") \
            from None

    inputs = list(run.inputs.dataset_inputs) if run.inputs else []
    matches = [di for di in inputs if name in (None, di.dataset.name) and context in (None, _context(di))]
    wanted = (f" named {name!r}" if name else "") + (f" with context {context!r}" if context else "")
    if not inputs:
        raise ModelpressError(f"run {run_id} has no dataset inputs",
                              "log one with mlflow.log_input or set data.uri")
    if not matches:
        found = ", ".join(map(_label, inputs))
        raise ModelpressError(f"run {run_id} has no dataset input{wanted} (inputs: {found})",
                              "set data.run_input.name / data.run_input.context to one of them")
    if len(matches) > 1:
        found = ", ".join(f"{_label(di)} digest {di.dataset.digest}" for di in matches)
        fix = "log them under distinct names" if name and context else \
            "set data.run_input.name / .context to pick one"
        raise ModelpressError(f"run {run_id} has {len(matches)} dataset inputs{wanted} ({found})", fix)

    ds = matches[0].dataset
    what = f"dataset {ds.name!r} of run {run_id}"
    provenance = {"run_id": run_id, "name": ds.name, "digest": ds.digest, "source_type": ds.source_type,
                  "source": ds.source, "context": _context(matches[0])}
    try:
        source = get_source(ds)
    except MlflowException:  # a source type this MLflow install has no class for
        source = None
    if not isinstance(source, FileSystemDatasetSource | HTTPDatasetSource):  # code, Delta, Spark, HF ...
        raise ModelpressError(
            f"{what} has source type {ds.source_type!r}, which MLflow cannot download as a file",
            "log the data file as an artifact and point data.uri at it",
        )

    dst.mkdir(parents=True, exist_ok=True)
    try:
        from modelpress.registry.store import fluent

        with fluent(client):  # a dataset source downloads through MLflow's global tracking URI
            local = Path(source.load(dst_path=str(dst)))
    except Exception as exc:  # varies by store: OSError, MlflowException, HTTP errors
        reason = ([ln for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__])[-1]
        raise ModelpressError(f"could not download {what} from {ds.source}: {reason}",
                              "check that the dataset's source still exists") from exc

    if local.is_dir():
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
        if len(files) != 1:
            shown = ", ".join(p.name for p in files[:3]) + (", ..." if len(files) > 3 else "")
            raise ModelpressError(f"{what} is a folder with {len(files)} data files ({shown or 'none'})",
                                  "log a single .parquet, .csv or .npz file as the dataset's source")
        local = files[0]
    elif local.suffix.lower() not in DATA_SUFFIXES:
        raise ModelpressError(f"{what} is {local.name!r}; modelpress reads .parquet, .csv or .npz",
                              "log the data in one of those formats")
    return local, provenance
