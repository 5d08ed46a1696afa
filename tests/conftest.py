"""Shared fixtures: a real `mlflow server` on 127.0.0.1 and the demo source model in it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked `long` (minutes each) first: parallel workers (`make test` runs pytest-xdist,
    one file per worker at a time) then start them early and finish together."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_mlflow_server(backend_uri: str, root: Path, workers: int = 1) -> Iterator[str]:
    """`mlflow server` on a free 127.0.0.1 port with proxied artifacts under `root`; yields its URI."""
    port = free_port()
    log = root / "server.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, log)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on 127.0.0.1:5432 (trust auth); its URL; dropped afterwards."""
    import uuid

    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2-binary (the test extra) is needed for PostgreSQL")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG} ({exc}); .ci/run starts it")
    db = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
    try:
        yield f"{PG}/{db}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server with a SQLite backend and proxied artifacts.

    Yields (uri, artifacts_dir). The schema is created by the server at start,
    before any client connects.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    with running_mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root) as uri:
        yield uri, root / "artifacts"


@pytest.fixture(scope="session")
def client(mlflow_server):
    """An MLflow client on the test server, to read back what the CLI registered."""
    from mlflow import MlflowClient

    uri, _ = mlflow_server
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="session")
def server_env(mlflow_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a `modelpress` subprocess that talks to the test server."""
    uri, _ = mlflow_server
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = uri
    env["MODELPRESS_HOME"] = str(tmp_path_factory.mktemp("modelpress-home"))
    return env


@pytest.fixture(scope="session")
def demo_source(server_env: dict[str, str]) -> str:
    """The demo CNN trained and registered once as models:/digits-cnn@champion."""
    proc = run_cli(["train-demo"], server_env)
    assert proc.returncode == 0, proc.stderr
    return "models:/digits-cnn@champion"


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`modelpress ARGS`; `run` and `demo` get `--objective size` unless they name an objective.

    The default objective's latency gate passes or fails on timing, and tests never assert on timing:
    `tests/unit/test_latency_guard.py` checks that gate with injected measurements, and
    `test_pipeline_e2e.py::test_demo_default_objective_registers_nothing_slower` runs it either way.
    """
    if args[:1] in (["run"], ["demo"]) and "--objective" not in args:
        args = [*args, "--objective", "size"]
    return subprocess.run(
        [sys.executable, "-m", "modelpress", *args],
        env=env, cwd=cwd or REPO, capture_output=True, text=True, timeout=600,
    )


def run_readme_script(script: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    """Run README commands as written (with this venv), from a folder holding only what they name (examples/,
    recipes/) and with a TMPDIR of their own; then check that they wrote nothing there (the store is
    MODELPRESS_HOME or the server) and that modelpress left nothing in TMPDIR.

    The example scripts stand in for the user's own code and get a TMPDIR apart: what their libraries leave
    (torch.export's empty inductor cache folder, say) is theirs, not modelpress's.
    """
    work, scratch, users = tmp / "work", tmp / "tmp", tmp / "user-tmp"
    for folder in (work, scratch, users):
        folder.mkdir()
    for name in ("examples", "recipes"):
        (work / name).symlink_to(REPO / name)
    bin_dir = Path(sys.executable).parent
    script = script.replace(".venv/bin/", f"{bin_dir}/")
    script = script.replace(f"{bin_dir}/python examples/", f"env TMPDIR={users} {bin_dir}/python examples/")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env={**env, "TMPDIR": str(scratch)},
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in work.iterdir()) == ["examples", "recipes"]  # nothing written beside the store
    assert sorted(p.name for p in scratch.iterdir()) == []  # every temporary file of modelpress's removed
    return proc
