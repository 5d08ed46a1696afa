"""prune -> quantize through the real pipeline: kfp.local tasks, a real mlflow server, ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

FAST = (
    "evaluate:\n  latency_runs: 20\n  warmup_runs: 2\n"
    "variant: {alias: pruned}\n"
)
PRUNE = (
    "prune:\n  method: structured\n  ratio: 0.5\n"
    "  schedule: {steps: 2, epochs_per_step: 2}\n  finetune: {epochs: 15}\n"
)


def test_prune_then_quantize_registers_one_variant(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "prune-int8.yaml"
    recipe.write_text(
        FAST + PRUNE + "target: cpu-x86-int8\n"
        "gates:\n"
        "  - {metric: accuracy, change: {max_degradation: 0.01}}\n"
        "  - {metric: prune_macs_ratio, direction: lower_is_better, value: {upper: 0.55}}\n"
    )
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prune step 2/2" in proc.stderr

    name = "digits-cnn.cpu-x86-int8"
    mv = client.get_model_version_by_alias(name, "pruned")
    tags = mv.tags
    assert tags["modelpress.chain"] == "prune>export_onnx>quantize"
    assert float(tags["modelpress.metric.prune_macs_ratio"]) <= 0.55
    assert float(tags["modelpress.metric.accuracy_delta"]) >= -0.01  # the default gate held
    note = json.loads(tags["modelpress.note.prune"])
    assert note["channels"] == {"0": "16->8", "4": "32->16", "9": "64->32"}
    assert json.loads(tags["modelpress.note.quantize"])["settings"]["mode"] == "static"
    verdict = json.loads(Path(client.download_artifacts(mv.run_id, "verdict.json", str(tmp_path))).read_text())
    gated = {r["metric"]: r for r in verdict["results"]}
    assert gated["prune_macs_ratio"]["passed"] and gated["prune_macs_ratio"]["measured"] <= 0.55
    key = tags["modelpress.key"]
    assert len(client.search_model_versions(f"tags.`modelpress.key` = '{key}'")) == 1


def test_prune_for_an_fp32_target_skips_quantization(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "prune-fp32.yaml"
    recipe.write_text(
        FAST + "target: cpu-x86-fp32\n"
        "prune:\n  method: unstructured\n  ratio: 0.8\n"
        "  schedule: {steps: 2, epochs_per_step: 1}\n  finetune: {epochs: 5}\n"
    )
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "quantize: none for the fp32 target" in proc.stderr
    mv = client.get_model_version_by_alias("digits-cnn.cpu-x86-fp32", "pruned")
    assert mv.tags["modelpress.chain"] == "prune>export_onnx"
    assert float(mv.tags["modelpress.metric.prune_weight_sparsity"]) == pytest.approx(0.8, abs=1e-3)
    assert float(mv.tags["modelpress.metric.prune_file_ratio"]) < 0.4


def test_unknown_layer_fails_in_the_task_with_one_line(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "bad-layer.yaml"
    recipe.write_text(FAST + "prune:\n  method: structured\n  ratio: 0.5\n  layer_ratios: {conv9: 0.3}\n")
    versions = len(client.search_model_versions("name = 'digits-cnn.cpu-x86-int8'"))
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "no Conv2d, Linear or Embedding layer named 'conv9'" in last and "use one of: 0, 4, 9, 11" in last
    assert "Traceback" not in proc.stderr
    assert len(client.search_model_versions("name = 'digits-cnn.cpu-x86-int8'")) == versions


@pytest.mark.parametrize("body, named", [
    ("prune: {method: structured, ratio: 1.5}\n", "prune.ratio: ratio 1.5 is outside [0, 1)"),
    ("target: cpu-x86-fp32\n", "there is no distill, prune or deep_compress section"),
])
def test_bad_prune_recipe_is_refused_before_any_task(server_env, tmp_path, body, named):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(body)
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 2
    assert named in proc.stderr.strip().splitlines()[-1]
    assert "running the pipeline" not in proc.stderr
