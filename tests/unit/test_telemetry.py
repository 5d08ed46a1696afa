"""modelpress's processes keep the libraries' usage telemetry off (a user's own setting wins)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelpress.cli import main
from modelpress.core.telemetry import OPT_OUTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_opts_out_before_any_task_starts(monkeypatch, tmp_path):
    for key in OPT_OUTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's choice is kept
    monkeypatch.setenv("MODELPRESS_HOME", str(tmp_path))
    assert main(["targets"]) == 0
    assert {k: os.environ[k] for k in OPT_OUTS} == {**OPT_OUTS, "MLFLOW_DISABLE_TELEMETRY": "false"}


def test_onnxruntime_then_writes_nothing_to_the_temporary_folder(tmp_path):
    """ONNX Runtime's telemetry leaves a `.ses` file in TMPDIR on import unless opted out."""
    env = {k: v for k, v in os.environ.items() if k not in OPT_OUTS} | {"TMPDIR": str(tmp_path)}
    code = "from modelpress.core.telemetry import opt_out; opt_out(); import onnxruntime"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
    assert list(tmp_path.iterdir()) == []


def test_the_component_image_sets_the_same_opt_outs():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert all(f"{k}={v}" in dockerfile for k, v in OPT_OUTS.items())
