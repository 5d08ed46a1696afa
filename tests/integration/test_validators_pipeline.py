"""Data checks, gates and their reports through the real pipeline (kfp.local, mlflow server, ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

FAST = "evaluate:\n  latency_runs: 10\n  warmup_runs: 1\n"
PRUNE = "prune:\n  method: structured\n  ratio: 0.25\n  schedule: {steps: 1}\n  finetune: {epochs: 2}\n"


@pytest.fixture(scope="module")
def nan_source(server_env, client, tmp_path_factory) -> str:
    """An (untrained) digits CNN whose evaluation split holds one NaN, registered as nan-digits@champion."""
    import mlflow

    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.models.zoo import PRESETS, build_model
    from modelpress.registry.source import register_source

    tmp = tmp_path_factory.mktemp("nan")
    data = load_dataset("sklearn-digits")
    x_test = data.x_test.copy()
    x_test[17, 0, 4, 4] = np.nan
    path = tmp / "digits-with-nan.npz"
    data.with_split("test", x=x_test).save(path)
    model_dir = artifacts.save_torch(tmp / "model", build_model(PRESETS["digits-cnn"], seed=0), PRESETS["digits-cnn"],
                                     artifacts.TensorSpec(shape=(1, 8, 8)), dataset=str(path))
    mlflow.set_tracking_uri(server_env["MLFLOW_TRACKING_URI"])
    register_source(client, "nan-digits", model_dir, "champion", metrics={}, description="digits CNN, NaN in test")
    return "models:/nan-digits@champion"


def test_nan_in_evaluation_data_stops_the_run_before_compression(nan_source, server_env, client, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(FAST + PRUNE + f"source: {nan_source}\n")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "data checks failed" in last
    assert "test split (evaluation): expect_column_values_to_be_between(input.nan_count) failed" in last
    assert "> prune" not in proc.stderr and "> distill" not in proc.stderr  # nothing compressed
    assert "Traceback" not in proc.stderr
    assert not client.search_registered_models("name = 'nan-digits.cpu-x86-int8'")


def test_failing_gate_writes_its_report_and_leaves_the_registry_alone(demo_source, server_env, client, tmp_path):
    """A gate nothing can pass: the verdict and report exist, the registry is untouched."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(FAST + "gates:\n  - {metric: accuracy, value: {lower: 1.01}}\n"
                      "  - {metric: size_ratio, direction: lower_is_better, value: {upper: 0.5}, "
                      "targets: [cpu-x86-int8]}\n")
    name = "digits-cnn.cpu-x86-int8"
    before = [(v.version, dict(v.tags)) for v in client.search_model_versions(f"name = '{name}'")]
    aliases = client.get_registered_model(name).aliases if before else {}
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "accuracy: " in proc.stderr and "below the lower bound 1.01" in proc.stderr
    after = [(v.version, dict(v.tags)) for v in client.search_model_versions(f"name = '{name}'")]
    assert after == before
    assert (client.get_registered_model(name).aliases if after else {}) == aliases
    report = Path(proc.stderr.split("gate report: ")[1].splitlines()[0])
    text = report.read_text()
    assert "**Verdict: FAILED**" in text
    assert "| accuracy | >= 1.01 |" in text and "| size_ratio | <= 0.5 |" in text
    # The reasons can be read back from MLflow too: a tracking run, not a registry entry.
    run_id = proc.stderr.split("failed verdict logged to MLflow run ")[1].split()[0]
    run = client.get_run(run_id)
    assert run.data.tags["modelpress.verdict"] == "failed" and "below the lower bound 1.01" in run.data.tags[
        "modelpress.reason"]
    assert Path(client.download_artifacts(run_id, "gate_report.md", str(tmp_path))).read_text() == text
