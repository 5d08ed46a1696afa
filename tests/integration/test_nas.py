"""NAS for real: workers as separate processes on one PostgreSQL study, a SIGKILL'd worker and its rerun, and
NAS -> distill -> static INT8 through `modelpress run`, registered with the trial that chose its architecture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, fresh_postgres_database, run_cli

pytestmark = pytest.mark.integration

TINY_SPACE = {"depth": {"min": 1, "max": 2}, "widths": [4, 8], "hidden": [8, 16], "kernel_sizes": [3],
              "skip": [False], "activations": ["relu"]}
WORKER = ("import json, sys\nfrom modelpress.components.nas.step import worker_step\n"
          "from modelpress.components.task import user_errors\n"
          "with user_errors('nas_worker'):\n    worker_step(**json.load(open(sys.argv[1])))\n")


@pytest.fixture(scope="module")
def pg_url():
    """A fresh PostgreSQL database for the study (dropped afterwards)."""
    with fresh_postgres_database("nas") as url:
        yield url


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A briefly trained teacher, the digits splits and a pinned source, as the workers' task inputs."""
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.models.train import TrainConfig, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    root = tmp_path_factory.mktemp("nas-inputs")
    data = load_dataset("sklearn-digits")
    module = build_model(DigitsCNNSpec(), seed=0)
    train(module, data, TrainConfig(epochs=3), progress=lambda s: None)
    artifacts.save_torch(root / "teacher", module, DigitsCNNSpec(), artifacts.TensorSpec(shape=(1, 8, 8)),
                         "sklearn-digits")
    data.save(root / "data.npz")
    (root / "source.json").write_text(json.dumps({"name": "digits-cnn", "version": "1"}))
    return root


def _args(inputs: Path, config: dict, config_hash: str, worker: int) -> dict:
    return {"config_json": json.dumps(config), "worker": worker,
            "run_json": json.dumps({"source": "models:/digits-cnn@champion", "config_hash": config_hash}),
            "tracking_uri": "sqlite:////nonexistent/mlflow.db", "source_path": str(inputs / "source.json"),
            "targets": ["cpu-x86-fp32"], "evaluate_json": "{}", "quantize_json": "{}", "gates_json": "null",
            "model_in": str(inputs / "teacher"), "dataset": str(inputs / "data.npz")}


def _start(inputs: Path, tmp: Path, config: dict, config_hash: str, worker: int) -> subprocess.Popen:
    args = tmp / f"worker-{worker}-{time.monotonic_ns()}.json"
    args.write_text(json.dumps(_args(inputs, config, config_hash, worker)))
    return subprocess.Popen([sys.executable, "-c", WORKER, str(args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _study(url: str, config_hash: str):
    import optuna

    from modelpress.components.nas.search import study_name

    return optuna.load_study(study_name=study_name("models:/digits-cnn/1", config_hash), storage=url)


def test_four_workers_on_postgresql_complete_the_budget_with_unique_trials(pg_url, inputs, tmp_path):
    config = {"space": TINY_SPACE, "trials": 12, "workers": 4, "train": {"epochs": 1, "patience": 1},
              "latency_runs": 5, "storage": pg_url}
    procs = [_start(inputs, tmp_path, config, "0123456789abcdef", w) for w in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    trials = _study(pg_url, "0123456789abcdef").get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert 12 <= len(complete) <= 12 + 3  # at most one trial per other worker past the budget
    assert len({t.number for t in trials}) == len(trials)
    # Every worker pulled trials from the one study (each says how many it ran on its own sampler seed).
    assert all("done: study has" in err for _, err in outs)


def test_a_sigkilled_worker_then_a_rerun_completes_the_study(pg_url, inputs, tmp_path):
    config = {"space": TINY_SPACE, "trials": 5, "workers": 1, "train": {"epochs": 6, "patience": 6},
              "latency_runs": 5, "storage": pg_url, "heartbeat_seconds": 1}
    first = _start(inputs, tmp_path, config, "fedcba9876543210", 0)
    deadline = time.monotonic() + 120
    running = []
    while time.monotonic() < deadline and not running:  # kill it in the middle of a trial
        time.sleep(0.5)
        try:
            running = [t for t in _study(pg_url, "fedcba9876543210").get_trials() if t.state.name == "RUNNING"]
        except KeyError:  # the study does not exist yet
            continue
    assert running, "the worker never started a trial"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    rerun = _start(inputs, tmp_path, config, "fedcba9876543210", 0)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert f"retries trial {running[0].number}, whose worker stopped" in err
    trials = _study(pg_url, "fedcba9876543210").get_trials()
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 5
    (failed,) = [t for t in trials if t.state.name == "FAIL"]
    assert failed.number == running[0].number
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == failed.number]
    assert retry.state.name == "COMPLETE"


def test_nas_distill_int8_registers_a_variant_tagged_with_its_trial(demo_source, server_env, client, tmp_path):
    """The shipped recipe, scaled down to test size: same sections, smaller budgets, a gate tiny training meets."""
    recipe = yaml.safe_load((REPO / "recipes" / "digits-nas-int8.yaml").read_text())
    recipe["nas"].update(trials=4, population=2, train={"epochs": 2, "patience": 2}, latency_runs=5,
                         storage=f"sqlite:///{tmp_path / 'studies.db'}")  # a server registry: workers need a shared store
    recipe["nas"]["constraints"] = []
    recipe["distill"]["train"] = {"epochs": 3, "patience": 3}
    recipe["gates"] = [{"metric": "size_ratio", "direction": "lower_is_better", "value": {"upper": 0.5}}]
    recipe["evaluate"] = {"latency_runs": 10, "warmup_runs": 1}
    recipe["model_checks"] = {"min_top1_agreement": None}  # a 3-epoch student does not agree with its teacher yet
    recipe["variant"] = {"alias": "nas"}
    path = tmp_path / "nas.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = run_cli(["run", "--recipe", str(path)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nas: 4 trials" in proc.stderr or "nas: 5 trials" in proc.stderr
    mv = client.get_model_version_by_alias("digits-cnn.cpu-x86-int8", "nas")
    assert mv.tags["modelpress.chain"] == "nas>distill>export_onnx>quantize"
    note = json.loads(mv.tags["modelpress.note.nas"])
    assert mv.tags["modelpress.nas.trial"] == str(note["trial"])
    assert mv.tags["modelpress.nas.sampler"] == "nsga2" and mv.tags["modelpress.nas.rule"] == recipe["nas"]["select"]
    # The distilled student is the chosen architecture.
    assert json.loads(mv.tags["modelpress.note.distill"])["student"] == note["architecture"]
    # The search is an MLflow run with one child run per trial, and its Pareto front as an artifact.
    parent = client.get_run(mv.tags["modelpress.nas.run"])
    assert parent.data.tags["modelpress.nas.chosen_trial"] == str(note["trial"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) >= 4
    assert [c for c in children if c.data.tags["modelpress.nas.chosen"] == "true"]
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"nas_front.html", "nas_front.json"} <= names
