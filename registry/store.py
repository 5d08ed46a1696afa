"""Where the registry lives, and getting a client that is known to work.

Default: an embedded store in the working directory, `./.modelpress/`
(SQLite plus an artifact folder), created when absent. `MLFLOW_TRACKING_URI`,
when set, wins, so the same commands work against a real `mlflow server`.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "modelpress"
HOME_ENV = "MODELPRESS_HOME"


def home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.cwd() / ".modelpress").resolve()


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{home() / 'mlflow.db'}"


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def _check_reachable(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelpressError(
            f"MLflow tracking server {uri} is unreachable ({reason})",
            "start it or set MLFLOW_TRACKING_URI to a server that is up",
        ) from None


def connect(uri: str | None = None) -> MlflowClient:
    """A client for `uri` (default: `tracking_uri()`), with the store initialised.

    Initialising creates the schema of a fresh SQLite store and the
    `modelpress` experiment. Do it once, before concurrent clients start:
    many clients creating one fresh schema at once race on it.
    """
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    _check_reachable(uri)
    if is_embedded(uri):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Fail fast instead of retrying for minutes against a dead server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    # Our commands print their own results (some as JSON); MLflow's run links would corrupt them.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ensure_experiment(client, uri)
    return client


@contextmanager
def fluent(client: MlflowClient) -> Iterator[str]:
    """Point MLflow's global tracking and registry URIs at `client`'s store for the calls inside, then back.

    Only MLflow's fluent-only APIs need it (`mlflow.<flavor>.log_model`, `download_artifacts` of a
    models:/ URI, a dataset source's `load`); everything else takes the client. Yields the modelpress
    experiment's id. What was set before (nothing, for MLflow's default) is set again after, and so
    are the environment variables MLflow mirrors the URIs into.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    # MLflow keeps what was set explicitly in these two module globals (None: its default).
    before = tracking_state._tracking_uri, registry_state._registry_uri  # noqa: SLF001
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(client._registry_uri)  # noqa: SLF001 - MlflowClient has no public getter
    try:
        yield ensure_experiment(client, client.tracking_uri)
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ensure_experiment(client: MlflowClient, uri: str) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    if is_embedded(uri):
        # Keep artifacts beside the SQLite file, not in ./mlruns of whatever the cwd is.
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        location = artifacts.as_uri()
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except Exception:
        # Another client created it between our lookup and create.
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id
