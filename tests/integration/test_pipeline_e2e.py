"""The demo pipeline end to end: real mlflow server, kfp.local subprocess tasks, ONNX Runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

VARIANT = "digits-cnn.cpu-x86-int8"
FAST = "evaluate:\n  latency_runs: 20\n  warmup_runs: 2\n"


@pytest.fixture(scope="module")
def first_run(demo_source, server_env, tmp_path_factory):
    recipe = tmp_path_factory.mktemp("recipe") / "fast.yaml"
    recipe.write_text(FAST + "objective: size\nquantize:\n  tune: {}\n")  # what `demo` runs (tests: objective size)
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    return proc, recipe


def test_pipeline_registers_variant_with_lineage(first_run, client, demo_source):
    proc, _ = first_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The one table a person reads.
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| variant"))
    for col in ("target", "size vs source", "accuracy vs source", "latency p50 vs source", "gate",
                "registry URI"):
        assert col in header
    assert f"| {VARIANT} | cpu-x86-int8 |" in proc.stdout and "PASSED" in proc.stdout

    mv = client.get_model_version_by_alias(VARIANT, "candidate")
    source = client.get_model_version_by_alias("digits-cnn", "champion")
    tags = mv.tags
    assert tags["modelpress.kind"] == "variant"
    assert tags["modelpress.source.name"] == "digits-cnn"
    assert tags["modelpress.source.version"] == source.version
    assert tags["modelpress.chain"] == "export_onnx>quantize"
    assert tags["modelpress.target"] == "cpu-x86-int8"
    assert tags["modelpress.verdict"] == "passed"
    assert len(tags["modelpress.config_hash"]) == 16
    assert float(tags["modelpress.metric.accuracy"]) >= 0.97
    # Tuned for size: static INT8 within 1.0 point (the gate) and at most 40% of FP32.
    assert float(tags["modelpress.metric.size_ratio"]) <= 0.40
    assert float(tags["modelpress.metric.accuracy_delta"]) >= -0.01
    settings = json.loads(tags["modelpress.note.quantize"])["settings"]
    assert (settings["mode"], settings["format"]) == ("static", "qoperator")
    assert "latency_p95_ms_b64" in " ".join(tags)
    assert f"models:/{VARIANT}/{mv.version}" in proc.stdout
    assert "Compressed variant of digits-cnn" in mv.description


def test_registered_variant_loads_in_onnxruntime(first_run, client, mlflow_server, tmp_path):
    import mlflow
    import numpy as np

    uri, _ = mlflow_server
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{VARIANT}@candidate")
    out = model.predict(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert np.asarray(out["logits"] if isinstance(out, dict) else out).shape[-1] == 10
    signature = model.metadata.signature  # named inputs and outputs for a serving team
    assert signature.inputs.input_names() == ["input"] and signature.outputs.input_names() == ["logits"]
    assert model.metadata.saved_input_example_info is not None


def test_a_variant_serves_without_modelpress(first_run, mlflow_server):
    """A serving team's process: mlflow and onnxruntime, and modelpress cannot be imported."""
    uri, _ = mlflow_server
    script = ("import sys; sys.modules['modelpress'] = None\n"  # any import of modelpress now fails
              "import mlflow, numpy as np\n"
              f"mlflow.set_tracking_uri('{uri}')\n"
              f"m = mlflow.pyfunc.load_model('models:/{VARIANT}@candidate')\n"
              "out = m.predict({'input': np.zeros((3, 1, 8, 8), dtype=np.float32)})\n"
              "print(np.asarray(out['logits'] if isinstance(out, dict) else out).shape)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "(3, 10)"


def test_the_demo_command_reuses_the_source_and_the_variant(first_run, server_env):
    """`make demo`'s command on a registry holding both: nothing runs again, and it exits 0."""
    proc = run_cli(["demo"], server_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already registered" in proc.stderr and "not run again" in proc.stderr


def test_demo_default_objective_registers_nothing_slower(first_run, server_env, client):
    """`make demo` as a user runs it (objective latency): a variant not slower than its source at batch 64, or
    none and a line that says why. Which of the two is this machine's timing; either is checked."""
    import re

    proc = run_cli(["demo", "--objective", "latency"], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tune: objective latency" in proc.stderr
    if "PASSED" in proc.stdout:
        version = re.search(r"models:/digits-cnn\.cpu-x86-int8/(\d+)", proc.stdout).group(1)
        mv = client.get_model_version(VARIANT, version)
        assert float(mv.tags["modelpress.metric.latency_ratio_b64"]) <= 1.0
        assert float(mv.tags["modelpress.metric.size_ratio"]) < 1.0
    else:
        assert "FAILED" in proc.stdout and "- (not registered)" in proc.stdout
        assert "cpu-x86-int8: no variant registered: on this CPU the INT8 variant runs at" in proc.stderr
        assert "--objective size" in proc.stderr


def test_rerun_is_idempotent(first_run, client, server_env):
    _, recipe = first_run
    before = client.search_model_versions(f"name = '{VARIANT}'")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already registered" in proc.stderr
    assert len(client.search_model_versions(f"name = '{VARIANT}'")) == len(before)


def test_failing_gate_leaves_registry_untouched(first_run, client, server_env, tmp_path):
    alias_before = client.get_model_version_by_alias(VARIANT, "candidate").version
    versions_before = len(client.search_model_versions(f"name = '{VARIANT}'"))
    recipe = tmp_path / "strict.yaml"
    # INT8 cannot be 20% *more* accurate than its source: the gate must fail.
    recipe.write_text(FAST + "gates:\n  - metric: accuracy\n    change: {max_degradation: -0.2}\n")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("modelpress: gate failed, nothing registered: accuracy:"), last
    assert "Traceback" not in proc.stderr
    assert "FAILED" in proc.stdout
    assert len(client.search_model_versions(f"name = '{VARIANT}'")) == versions_before
    assert client.get_model_version_by_alias(VARIANT, "candidate").version == alias_before


def test_a_cpu_fallback_does_not_pass_for_the_target(demo_source, server_env, client, tmp_path):
    """nvidia-cuda-fp16 here: CUDA is not installed, so the model check on the target's provider fails."""
    recipe = tmp_path / "fp16.yaml"
    recipe.write_text(FAST + "target: nvidia-cuda-fp16\n")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "modelpress: gate failed, nothing registered: model: target provider: "
        "CUDAExecutionProvider is not installed in this onnxruntime")
    assert not client.search_registered_models("name = 'digits-cnn.nvidia-cuda-fp16'")


def test_missing_provider_is_recorded_not_hidden(demo_source, server_env, client, tmp_path):
    """With the provider check waived, accuracy falls back to the CPU provider and latency is
    left out; both facts are tagged on the variant."""
    recipe = tmp_path / "fp16.yaml"
    recipe.write_text(FAST + "target: nvidia-cuda-fp16\nmodel_checks: {require_target_provider: false}\n")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CUDAExecutionProvider is not installed" in proc.stdout
    mv = client.get_model_version_by_alias("digits-cnn.nvidia-cuda-fp16", "candidate")
    env = json.loads(mv.tags["modelpress.note.evaluation_environment"])
    assert env["accuracy_provider"] == "CPUExecutionProvider"
    assert "not installed" in env["latency_unavailable"]
    assert not any("latency" in k for k in mv.tags if k.startswith("modelpress.metric."))
    assert json.loads(mv.tags["modelpress.note.quantize"])["settings"]["mode"] == "fp16"


def test_qat_then_a_tuned_quantize_records_the_chain_and_every_candidate(demo_source, server_env, client, tmp_path):
    """QAT, then quantize.tune through the real pipeline: the chain is recorded, the candidates are measured, the
    kept one is registered and tagged, and the run's report lists them. No timing is asserted: which candidate
    wins is the machine's."""
    import re

    recipe = tmp_path / "qat.yaml"
    recipe.write_text(FAST + "target: cpu-arm64-int8\nquantize:\n  qat: {epochs: 1}\n"
                      "  tune: {latency_runs: 5, max_candidates: 3}\n")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "qat epoch 1/1" in proc.stderr
    assert "tune 3:" in proc.stderr and "tune 4:" not in proc.stderr
    version = re.search(r"models:/digits-cnn\.cpu-arm64-int8/(\d+)", proc.stdout).group(1)
    mv = client.get_model_version("digits-cnn.cpu-arm64-int8", version)
    assert mv.tags["modelpress.chain"] == "qat>export_onnx>quantize"
    tuned = json.loads(mv.tags["modelpress.note.quantize"])["tune"]
    assert len(tuned["candidates"]) == 3 and mv.tags["modelpress.quantize.tuned"] == tuned["chosen_label"]
    # QAT prepared the weights for static INT8: a dynamic candidate is never built.
    assert all(not c["label"].startswith("dynamic") for c in tuned["candidates"])
    report = re.search(r"report \(accuracy, latency, size; Pareto front\): (\S+)", proc.stdout + proc.stderr).group(1)
    assert "Quantization tuning" in open(report).read()


def test_what_submit_sends_skips_an_unchanged_source_in_one_task(first_run, mlflow_server, tmp_path):
    """The compiled YAML that `submit` and `schedule` send, run by kfp.local with the arguments they send:
    the variant exists, so the run is the registry check and nothing else."""
    from kfp import components, local

    from modelpress.pipelines.arguments import pipeline_arguments
    from modelpress.pipelines.compile import compile_pipeline
    from modelpress.pipelines.recipe import load_recipe

    _, recipe_path = first_run
    recipe = load_recipe(recipe_path)
    uri, _ = mlflow_server
    pipeline = components.load_component_from_file(str(compile_pipeline(tmp_path / "pipeline.yaml", recipe)))
    root = tmp_path / "root"
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    pipeline(**pipeline_arguments(recipe, uri))
    (run_dir,) = list(root.iterdir())
    assert sorted(p.name for p in run_dir.iterdir()) == ["check-registered"]  # one task ran
    (found,) = json.loads((run_dir / "check-registered" / "registered").read_text())
    assert (found["target"], found["name"]) == ("cpu-x86-int8", VARIANT)
