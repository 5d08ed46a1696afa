"""Three `modelpress demo` started together on a fresh folder: all succeed, on one source version, and leave no
temporary files behind. Then one killed mid-run: the next start settles what it left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.integration


def test_three_demos_at_once_on_a_fresh_store(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MODELPRESS_HOME"] = str(home)
    scratch = tmp_path.parent / f"{tmp_path.name}-scratch"  # their temporary folder: left empty afterwards
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    # objective size: whether a variant registers must not depend on timing (tests/conftest.py::run_cli)
    demo = [sys.executable, "-m", "modelpress", "demo", "--quiet", "--objective", "size"]
    procs = [subprocess.Popen(demo, cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert [str(v.version) for v in client.search_model_versions("name = 'digits-cnn'")] == ["1"]
    variants = client.search_model_versions("name = 'digits-cnn.cpu-x86-int8'")
    assert len(variants) == 1  # one recipe, one source version: one variant, however many runs raced
    aliases = client.get_registered_model("digits-cnn.cpu-x86-int8").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"candidate": "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing written beside the store folder
    assert list(scratch.iterdir()) == []
    assert sum(1 for line in outs[0][1].splitlines() if "training digits-cnn" in line) <= 1

    # SIGKILL while the tasks run (the CLI and every task it started), then the next start settles it.
    cmd = demo
    victim = subprocess.Popen([*cmd, "--force"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any("Executing task 'resolve" in re.sub(r"\x1b\[[0-9;]*m", "", p.read_text())
                  for p in (home / "runs").glob("run-*/tasks.log") if (p.parent / ".running").exists()):
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "an earlier run was killed mid-way" in again.stderr
    experiment = client.get_experiment_by_name("modelpress").experiment_id
    assert client.search_runs([experiment], "attributes.status = 'RUNNING'") == []
    assert not list((home / "runs").glob("run-*/.running")) and not list((home / "runs").glob("run-*/tmp"))
