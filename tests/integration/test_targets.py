"""Every hardware target in one run: the shared prefix once, a variant per passing target."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.integration
RECIPE = REPO / "recipes" / "digits-cpu-targets.yaml"


def _tasks(stderr: str) -> list[str]:
    return re.findall(r"^  > (\S+)", stderr, re.M)


def _versions(client, name: str) -> list:
    return client.search_model_versions(f"name = '{name}'")


def test_three_targets_in_one_run(demo_source, server_env, client):
    proc = run_cli(["run", "--recipe", str(RECIPE)], server_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = _tasks(proc.stderr)
    for once in ("resolve", "validate-data", "distill", "prune", "deep-compress", "export-onnx", "summarize"):
        assert tasks.count(once) == 1, (once, tasks)
    for per_target in ("qat", "quantize", "evaluate", "gate", "register"):
        assert tasks.count(per_target) == 3, (per_target, tasks)
    from modelpress.pipelines.recipe import load_recipe

    config_hash = load_recipe(RECIPE).config_hash()  # one hash for every target: the key adds the target
    for target in ("cpu-x86-int8", "cpu-arm64-int8", "cpu-x86-fp32"):
        assert f"models:/digits-cnn.{target}/" in proc.stdout
        (mv,) = [v for v in _versions(client, f"digits-cnn.{target}")
                 if v.tags.get("modelpress.config_hash") == config_hash]
        assert mv.tags["modelpress.target"] == target and mv.tags["modelpress.verdict"] == "passed"
        # The run's Pareto report rides along with each variant's MLflow run.
        assert "pareto_report.html" in {a.path for a in client.list_artifacts(mv.run_id)}
    report = re.search(r"report \(accuracy, latency, size; Pareto front\): (\S+)", proc.stderr)[1]
    page = open(report).read()
    assert page.count("data:image/png;base64,") >= 3 and all(t in page for t in ("cpu-arm64-int8", "cpu-x86-fp32"))
    # Run again: every target is already registered, so the pipeline's first task is all that runs.
    again = run_cli(["run", "--recipe", str(RECIPE)], server_env)
    assert again.returncode == 0 and _tasks(again.stderr) == ["check-registered"]
    assert again.stderr.count("not run again") == 3


def test_one_target_failing_its_gates_registers_the_others(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "one-fails.yaml"
    # A latency gate no candidate can meet (100x faster than its source), on x86 INT8 only.
    recipe.write_text(RECIPE.read_text() + "  - metric: latency_ratio_b1\n"
                      "    value: {upper: 0.01}\n    targets: [cpu-x86-int8]\n")
    before = {t: len(_versions(client, f"digits-cnn.{t}")) for t in ("cpu-x86-int8", "cpu-arm64-int8", "cpu-x86-fp32")}
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("modelpress: gate failed on 1 of 3 targets, nothing registered for cpu-x86-int8: "
                           "latency_ratio_b1")
    after = {t: len(_versions(client, f"digits-cnn.{t}")) for t in before}
    assert after == {**before, "cpu-arm64-int8": before["cpu-arm64-int8"] + 1,
                     "cpu-x86-fp32": before["cpu-x86-fp32"] + 1}
    assert re.search(r"\| digits-cnn\.cpu-x86-int8 .*\| FAILED \| - \(not registered\)", proc.stdout)
