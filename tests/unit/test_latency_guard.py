"""The default latency gate (issue 21's honest defaults), with injected measurements: no timing here."""

import json

import pytest

from modelpress.errors import ModelpressError
from modelpress.pipelines.recipe import load_recipe
from modelpress.validators.gates import active_gates, check_all, latency_guard

ACC = {"metric": "accuracy", "change": {"max_degradation": 0.01}}


@pytest.mark.parametrize(("target", "guarded"), [
    ("cpu-x86-int8", True), ("cpu-arm64-int8", True),  # CPU INT8: the guard holds
    ("cpu-x86-fp32", False), ("nvidia-cuda-fp16", False), ("nvidia-trt-int8", False),
])
def test_guard_only_on_cpu_int8_targets(target, guarded):
    assert (latency_guard(target, "latency", 64) is not None) is guarded


def test_guard_is_not_slower_than_the_source_at_the_batch():
    guard = latency_guard("cpu-x86-int8", "latency", 256)
    assert (guard.metric, guard.direction, guard.value.upper) == ("latency_ratio_b256", "lower_is_better", 1.0)
    source = {"accuracy": 0.98}
    for ratio, passed in [(0.97, True), (1.0, True), (1.0001, False), (2.27, False)]:
        verdict = check_all((guard,), {"latency_ratio_b256": ratio}, source)
        assert verdict.passed is passed
    assert check_all((guard,), {"accuracy": 0.98}, source).reason == "latency_ratio_b256: not measured"


def test_objective_size_drops_the_guard():
    assert latency_guard("cpu-x86-int8", "size", 64) is None
    r = load_recipe(objective="size")
    assert [g.metric for g in r.active_gates("classification")] == ["accuracy"]


def test_a_latency_gate_of_the_recipes_own_replaces_the_guard():
    own = {"metric": "latency_ratio_b1", "value": {"upper": 1.2}}
    r = load_recipe(gates=[ACC, own])
    assert [g.metric for g in r.active_gates("classification")] == ["accuracy", "latency_ratio_b1"]


def test_guard_follows_the_evaluate_steps_largest_batch():
    r = load_recipe(evaluate={"batch_sizes": [1, 8, 32]})
    assert r.latency_batch() == 32 and r.active_gates("classification")[-1].metric == "latency_ratio_b32"
    gates = active_gates(None, "classification", "cpu-x86-int8", objective="latency", batch=32)
    assert [g.metric for g in gates] == ["accuracy", "latency_ratio_b32"]


@pytest.mark.parametrize(("data", "objective"), [
    ({}, "latency"),
    ({"objective": "size"}, "size"),
    ({"quantize": {"tune": {}}}, "latency"),
    ({"objective": "size", "quantize": {"tune": {}}}, "size"),
    ({"quantize": {"tune": {"objective": "size"}}}, "size"),  # written only in tune: it is the recipe's too
])
def test_one_objective_for_the_recipe_and_its_tuning(data, objective):
    r = load_recipe(**data)
    assert r.objective == objective
    if r.quantize.tune is not None:
        assert r.quantize.tune.objective == objective


def test_objectives_that_disagree_are_refused_in_one_line():
    with pytest.raises(ModelpressError) as exc:
        load_recipe(objective="latency", quantize={"tune": {"objective": "size"}})
    msg = str(exc.value)
    assert "objective latency and quantize.tune.objective size disagree" in msg and "\n" not in msg


def test_objective_changes_the_variant_key():
    assert load_recipe().config_hash() != load_recipe(objective="size").config_hash()


def _gate(tmp_path, ratio: float, run: dict) -> tuple[bool, dict]:
    from modelpress.components.gate.step import gate_step

    evaluation = {"task": "classification", "candidate": {"accuracy": 0.98, "size_bytes": 10.0},
                  "source": {"accuracy": 0.98, "size_bytes": 40.0},
                  "comparison": {"top1_agreement": 1.0, "size_ratio": 0.25, "latency_ratio_b64": ratio},
                  "checks": {"onnx_checker": {"passed": True, "detail": "valid"}},
                  "environment": {"target_provider": "CPUExecutionProvider", "latency_provider": "CPUExecutionProvider"}}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    passed = gate_step("null", "{}", "cpu-x86-int8",
                       json.dumps({"source": "models:/m@champion", "config_hash": "0" * 16, **run}),
                       tmp_path / "evaluation.json", tmp_path / "verdict.json", tmp_path / "report.md")
    return passed, json.loads((tmp_path / "verdict.json").read_text())


def test_gate_step_fails_a_slower_cpu_int8_variant_by_default(tmp_path):
    passed, verdict = _gate(tmp_path, 2.27, {})
    assert not passed and verdict["reason"] == "latency_ratio_b64: 2.27 is above the upper bound 1"
    assert _gate(tmp_path, 0.95, {})[0]


def test_gate_step_with_objective_size_registers_the_slower_but_smaller_variant(tmp_path):
    passed, verdict = _gate(tmp_path, 2.27, {"objective": "size"})
    assert passed and [r["metric"] for r in verdict["results"] if r["metric"].startswith("latency")] == []


def test_the_cli_explains_a_latency_only_failure(capsys):
    from modelpress.cli import _explain_latency

    slow = {"target": "cpu-x86-int8", "passed": False, "results": [
        {"metric": "accuracy", "passed": True, "measured": 0.98},
        {"metric": "latency_ratio_b64", "passed": False, "measured": 1.64}]}
    also_inaccurate = {**slow, "results": [{**slow["results"][0], "passed": False}, slow["results"][1]]}
    explained = _explain_latency(load_recipe(), [slow, also_inaccurate])
    assert explained == [slow]  # an accuracy failure is not explained away
    err = capsys.readouterr().err
    assert "1.64x its FP32 source's latency at batch 64" in err and "--objective size" in err
    assert _explain_latency(load_recipe(objective="size"), [slow]) == []
