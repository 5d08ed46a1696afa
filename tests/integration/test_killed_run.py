"""A local run killed with SIGKILL: the next start marks its MLflow runs KILLED and removes its scratch files.

The real CLI killed mid-run is in test_concurrent_demos.py, on the store its demos leave."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

# Stands in for a pipeline's CLI and one of its tasks: holds its run folder, opens an MLflow run tagged with it
# as a task does, leaves scratch and an error file, and waits to be killed.
_VICTIM = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from modelpress.pipelines.run_folder import ERROR_FILE, SCRATCH, hold, local_run_env
    from modelpress.registry import tags as T
    from modelpress.registry.store import connect, ensure_experiment

    uri, folder = sys.argv[1], Path(sys.argv[2])
    with hold(folder):
        os.environ.update(local_run_env(folder))
        client = connect(uri)
        run = client.create_run(ensure_experiment(client, uri), run_name="task", tags=T.origin_tags())
        (folder / SCRATCH).mkdir()
        (folder / SCRATCH / "part.onnx").write_bytes(b"x")
        (folder / ERROR_FILE).touch()
        (folder / "tasks.log").write_text("task log")
        print(run.info.run_id, flush=True)
        time.sleep(600)
""")


def test_the_next_start_settles_a_run_killed_mid_way(tmp_path):
    from modelpress.pipelines.run_folder import ERROR_FILE, RUNNING, SCRATCH, hold, reap
    from modelpress.registry.store import connect

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    client = connect(uri)
    runs = tmp_path / "runs"
    dead, alive = runs / "run-20261130-000000-dead", runs / "run-20261130-000001-live"
    dead.mkdir(parents=True)
    alive.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", _VICTIM, uri, str(dead)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    run_id = victim.stdout.readline().strip()
    assert client.get_run(run_id).info.status == "RUNNING"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)

    said: list[str] = []
    with hold(alive):  # a run still going (its lock held) is left alone
        (alive / SCRATCH).mkdir()
        assert reap(runs, lambda: client, said.append) == [dead.name]
        assert (alive / RUNNING).exists() and (alive / SCRATCH).exists()
    assert client.get_run(run_id).info.status == "KILLED"
    assert not (dead / SCRATCH).exists() and not (dead / ERROR_FILE).exists() and not (dead / RUNNING).exists()
    assert (dead / "tasks.log").read_text() == "task log"  # kept, for the post-mortem
    assert said == [f"an earlier run was killed mid-way ({dead}): 1 MLflow run marked KILLED, its scratch files "
                    "removed; its task log stays"]
    # Settled once: the next start finds nothing to do, and the run that ended normally left no marker.
    assert reap(runs, lambda: client, said.append) == [] and not (alive / RUNNING).exists()

