"""distill -> quantize through the real pipeline, the training run in MLflow, a variant as teacher."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

FAST = "evaluate:\n  latency_runs: 20\n  warmup_runs: 2\n"
DISTILL = (
    "distill:\n  student: {family: digits-cnn, width: 0.45}\n"
    "  train: {epochs: 25, patience: 10}\n"
)
VARIANT = "digits-cnn.cpu-x86-int8"


@pytest.fixture(scope="module")
def distilled(demo_source, server_env, tmp_path_factory):
    recipe = tmp_path_factory.mktemp("distill") / "distill-int8.yaml"
    recipe.write_text(FAST + DISTILL + "target: cpu-x86-int8\nvariant: {alias: distilled}\n")
    return run_cli(["run", "--recipe", str(recipe)], server_env)


def test_distill_then_quantize_registers_a_linked_variant(distilled, client):
    proc = distilled
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher: models:/digits-cnn@champion" in proc.stderr
    assert "epoch   1/25" in proc.stderr  # progress per epoch
    mv = client.get_model_version_by_alias(VARIANT, "distilled")
    assert mv.tags["modelpress.chain"] == "distill>export_onnx>quantize"
    note = json.loads(mv.tags["modelpress.note.distill"])
    assert note["student"]["channels"] == [7, 14] and note["metrics"]["params_ratio"] < 0.25
    # The training run is in MLflow, per epoch, and points back at the variant.
    run = client.get_run(mv.tags["modelpress.training_run_id"])
    assert run.data.tags["modelpress.variant"] == f"models:/{VARIANT}/{mv.version}"
    assert run.data.tags["modelpress.technique"] == "distill"
    assert json.loads(run.data.params["student"])["family"] == "digits-cnn"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 2
    assert "best_val_accuracy" in run.data.metrics


def test_a_registered_variant_can_teach(distilled, server_env, client, tmp_path):
    """The INT8 ONNX variant from the test above is the teacher here."""
    assert distilled.returncode == 0
    recipe = tmp_path / "from-variant.yaml"
    recipe.write_text(
        FAST + f"source: models:/{VARIANT}@distilled\ntarget: cpu-x86-fp32\n"
        "distill:\n  student: {family: mlp, width: 0.3, depth: 1}\n  train: {epochs: 60, patience: 10}\n"
        "gates:\n  - {metric: accuracy, change: {max_degradation: 0.05}}\n"
    )
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mv = client.get_model_version_by_alias(f"{VARIANT}.cpu-x86-fp32", "candidate")
    assert json.loads(mv.tags["modelpress.note.distill"])["teacher_format"] == "onnx"
    assert mv.tags["modelpress.chain"] == "distill>export_onnx"
    assert mv.tags["modelpress.source.name"] == VARIANT


@pytest.mark.parametrize("body, named", [
    (f"source: models:/no-such-teacher@champion\n{DISTILL}",
     "distill teacher (the recipe's source): registered model 'no-such-teacher' not found"),
    ("distill: {student: {family: mlp}, temperature: 0}\n", "distill.temperature: temperature 0.0 must be > 0"),
    ("distill: {student: {family: mlp}, alpha: 2}\n", "distill.alpha: alpha 2.0 is outside [0, 1]"),
])
def test_bad_distill_input_is_refused_before_any_task(demo_source, server_env, client, tmp_path, body, named):
    versions = client.search_model_versions("")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(body)
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr.strip().splitlines()[-1]
    assert "running the pipeline" not in proc.stderr
    assert len(client.search_model_versions("")) == len(versions)


def test_mismatched_student_fails_in_the_task_with_one_line(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "seven.yaml"
    recipe.write_text(FAST + "distill:\n  student: {architecture: {family: mlp, hidden: [16], num_classes: 7}}\n")
    before = len(client.search_model_versions(""))
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "teacher and student output shapes differ: teacher (10,), student (7,)" in last
    assert "Traceback" not in proc.stderr
    assert len(client.search_model_versions("")) == before


def test_distill_then_prune_keeps_both_records(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "distill-prune.yaml"
    recipe.write_text(
        FAST + DISTILL + "target: cpu-x86-fp32\nvariant: {alias: distilled-pruned}\n"
        "prune: {method: unstructured, ratio: 0.5, schedule: {steps: 1}, finetune: {epochs: 3}}\n"
        "gates:\n  - {metric: accuracy, change: {max_degradation: 0.05}}\n"
    )
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mv = client.get_model_version_by_alias("digits-cnn.cpu-x86-fp32", "distilled-pruned")
    assert mv.tags["modelpress.chain"] == "distill>prune>export_onnx"
    assert "modelpress.note.distill" in mv.tags and "modelpress.note.prune" in mv.tags
    run = client.get_run(mv.tags["modelpress.training_run_id"])
    assert run.data.tags["modelpress.variant"] == f"models:/digits-cnn.cpu-x86-fp32/{mv.version}"
