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
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "modelpress"
HOME_ENV = "MODELPRESS_HOME"


def home() -> Path:
    """Where the embedded store, run folders and logs live."""
    folder = Path(os.environ.get(HOME_ENV) or Path.cwd() / ".modelpress").resolve()
    if folder.exists() and not folder.is_dir():
        raise ModelpressError(f"{HOME_ENV} {folder} is a file, not a folder",
                              f"point {HOME_ENV} at a folder (it is created when absent)")
    return folder


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded store; checked, with the installed database driver."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return check_uri(uri) if uri else check_uri(f"sqlite:///{home() / 'mlflow.db'}")


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:///")


# What MLflow's tracking and registry stores both take.
SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql")


def check_uri(uri: str) -> str:
    """`uri` as the store will be opened, or one line naming what is wrong with it and the fix.

    A server must answer its health check and a database its port within seconds (MLflow and
    SQLAlchemy would otherwise retry for minutes); an SQLite file's folder must be writable.
    """
    from modelpress.core.dburl import redact, with_installed_driver

    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in SCHEMES:
        raise ModelpressError(f"tracking URI {redact(uri)}: unsupported scheme {scheme or '(none)'!r}",
                              "use http(s)://<mlflow server>, sqlite:///<file>, postgresql://... or mysql://...")
    if scheme in ("http", "https"):
        _check_reachable(uri)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    else:
        _check_database_port(uri)
        uri = with_installed_driver(uri)
    return uri


def _check_reachable(uri: str) -> None:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelpressError(
            f"MLflow tracking server {uri} is unreachable ({reason})",
            "start it or set MLFLOW_TRACKING_URI to a server that is up",
        ) from None


def _check_sqlite(uri: str) -> None:
    path = uri.removeprefix("sqlite:///")
    if not uri.startswith("sqlite:///") or path in ("", ":memory:"):
        raise ModelpressError(f"tracking URI {uri}: an SQLite store needs a file path",
                              "use sqlite:///<absolute path>, e.g. sqlite:////data/mlflow.db")
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelpressError(f"cannot create the store's folder {folder} ({exc.strerror or exc})",
                              f"set {HOME_ENV} (or MLFLOW_TRACKING_URI) to a writable place") from None
    if not os.access(folder, os.W_OK | os.X_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise ModelpressError(f"the store {path} is not writable by this user",
                              f"fix its permissions, or set {HOME_ENV} to a writable folder")


def _check_database_port(uri: str) -> None:
    """A database URI's host must answer on its port; a dead one fails here in seconds."""
    import socket

    from sqlalchemy.engine import make_url

    from modelpress.core.dburl import redact

    try:
        url = make_url(uri)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError
        raise ModelpressError(f"tracking URI {redact(uri)} does not parse ({exc})",
                              "write it as postgresql://user@host:5432/database") from None
    if not url.host or url.host.startswith("/") or (url.query or {}).get("host"):
        return  # a Unix socket: the driver reports it
    port = url.port or {"postgresql": 5432, "mysql": 3306, "mssql": 1433}[url.get_backend_name()]
    try:
        with socket.create_connection((url.host, port), timeout=5):
            pass
    except OSError as exc:
        raise ModelpressError(f"database {redact(uri)} is unreachable ({exc.strerror or exc})",
                              "start it, or set MLFLOW_TRACKING_URI to a database that is up") from None


def connect(uri: str | None = None) -> MlflowClient:
    """A client for `uri` (default: `tracking_uri()`), with the store initialised.

    Initialising creates the schema of a fresh SQLite store and the
    `modelpress` experiment. Do it once, before concurrent clients start:
    many clients creating one fresh schema at once race on it.
    """
    from mlflow import MlflowClient

    uri = check_uri(uri) if uri else tracking_uri()
    # Fail fast instead of retrying for minutes against a dead server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    # Our commands print their own results (some as JSON); MLflow's run links would corrupt them.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        # A fresh SQLite store's schema is created by the first client; several CLIs starting at once would
        # race on it (each runs the migrations), so on this machine they take turns.
        with store_lock("schema", Path(uri.removeprefix("sqlite:///")).parent) if is_embedded(uri) else nullcontext():
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            ensure_experiment(client, uri)
            client.search_registered_models(max_results=1)  # the registry's tables too
    except Exception as exc:  # noqa: BLE001 - MLflow wraps the database's and the server's errors alike
        from modelpress.core.dburl import redact

        if isinstance(exc, ModelpressError):
            raise
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelpressError(f"the MLflow store at {redact(uri)} could not be opened ({reason})",
                              "check the URI, the credentials and that the store's user may write") from None
    return client


@contextmanager
def store_lock(name: str, folder: Path | None = None) -> Iterator[None]:
    """An exclusive lock shared by every modelpress process on this machine using `folder` (default: the
    home folder), held until the block ends."""
    import fcntl

    where = (folder or home()) / "locks"
    where.mkdir(parents=True, exist_ok=True)
    with open(where / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
