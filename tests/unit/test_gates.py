import pytest
from pydantic import ValidationError

from modelpress.core.config import parse_config
from modelpress.errors import ModelpressError
from modelpress.validators.gates import ChangeThreshold, Gate, ValueThreshold, check, check_all


def gate(**kw) -> Gate:
    return parse_config(Gate, kw, "gate")


@pytest.mark.parametrize(
    ("measured", "passed"), [(0.90, True), (0.8999999, False), (0.95, True), (0.9500001, False)]
)
def test_value_threshold_boundaries(measured, passed):
    g = gate(metric="accuracy", value={"lower": 0.90, "upper": 0.95})
    assert check(g, {"accuracy": measured}, {}).passed is passed


@pytest.mark.parametrize(("candidate", "passed"), [(0.97, True), (0.9699, False), (0.99, True)])
def test_absolute_change_higher_is_better(candidate, passed):
    # source 0.98, at most 0.01 worse: 0.97 sits exactly on the boundary
    g = gate(metric="accuracy", change={"max_degradation": 0.01})
    assert check(g, {"accuracy": candidate}, {"accuracy": 0.98}).passed is passed


@pytest.mark.parametrize(("candidate", "passed"), [(11.0, True), (11.01, False), (5.0, True)])
def test_relative_change_lower_is_better(candidate, passed):
    # latency: at most 10% slower than 10 ms
    g = gate(metric="latency_p95_ms_b1", direction="lower_is_better",
             change={"max_relative_degradation": 0.10})
    assert check(g, {"latency_p95_ms_b1": candidate}, {"latency_p95_ms_b1": 10.0}).passed is passed


def test_negative_degradation_demands_improvement():
    g = gate(metric="accuracy", change={"max_degradation": -0.01})
    assert not check(g, {"accuracy": 0.98}, {"accuracy": 0.98}).passed
    assert check(g, {"accuracy": 0.99}, {"accuracy": 0.98}).passed


def test_missing_metric_fails():
    g = gate(metric="latency_p95_ms_b1", value={"upper": 5})
    result = check(g, {"accuracy": 0.9}, {})
    assert not result.passed and "not measured" in result.reason


def test_nan_metric_fails():
    g = gate(metric="accuracy", value={"lower": 0})
    assert not check(g, {"accuracy": float("nan")}, {}).passed


def test_change_without_source_value_fails():
    g = gate(metric="size_bytes", direction="lower_is_better", change={"max_degradation": 0})
    assert not check(g, {"size_bytes": 10}, {}).passed


def test_verdict_collects_reasons():
    gates = (gate(metric="accuracy", value={"lower": 0.99}), gate(metric="size_bytes", value={"upper": 1e9}))
    verdict = check_all(gates, {"accuracy": 0.5, "size_bytes": 10}, {})
    assert not verdict.passed
    assert verdict.reason.startswith("accuracy: 0.5 is below the lower bound 0.99")


@pytest.mark.parametrize(
    "bad",
    [
        {"metric": "accuracy"},  # no threshold at all
        {"metric": "accuracy", "value": {}},
        {"metric": "accuracy", "value": {"lower": 2, "upper": 1}},
        {"metric": "accuracy", "change": {}},
        {"metric": "accuracy", "value": {"lower": 0}, "extra": 1},
    ],
)
def test_bad_gate_configs_are_refused(bad):
    with pytest.raises(ModelpressError):
        gate(**bad)


def test_threshold_models_are_frozen():
    v = ValueThreshold(lower=0.1)
    with pytest.raises(ValidationError):
        v.lower = 0.2  # type: ignore[misc]
    assert ChangeThreshold(max_degradation=0.01).max_degradation == 0.01


# Every threshold kind at its boundary, both directions, through both engines: the typed checker
# and the Great Expectations suite over the metrics table must agree on each.
BOUNDARY_CASES = [
    # (gate, candidate value, source value, passes)
    ({"value": {"lower": 0.90}}, 0.90, None, True),
    ({"value": {"lower": 0.90}}, 0.8999999, None, False),
    ({"value": {"upper": 0.95}}, 0.95, None, True),
    ({"value": {"upper": 0.95}}, 0.9500001, None, False),
    ({"change": {"max_degradation": 0.01}}, 0.97, 0.98, True),
    ({"change": {"max_degradation": 0.01}}, 0.9699, 0.98, False),
    ({"direction": "lower_is_better", "change": {"max_degradation": 2.0}}, 12.0, 10.0, True),
    ({"direction": "lower_is_better", "change": {"max_degradation": 2.0}}, 12.001, 10.0, False),
    ({"change": {"max_relative_degradation": 0.10}}, 0.9, 1.0, True),
    ({"change": {"max_relative_degradation": 0.10}}, 0.8999, 1.0, False),
    ({"direction": "lower_is_better", "change": {"max_relative_degradation": 0.10}}, 11.0, 10.0, True),
    ({"direction": "lower_is_better", "change": {"max_relative_degradation": 0.10}}, 11.01, 10.0, False),
    ({"change": {"max_degradation": 0.01}}, 0.99, None, False),  # no source value: the change is unknown
    ({"value": {"lower": 0}}, float("nan"), None, False),
    ({"value": {"lower": 0}}, None, None, False),  # not measured
]


def test_gate_suite_and_checker_agree_at_every_boundary():
    from modelpress.validators.gate_suite import combine, validate_metrics

    gates, candidate, baseline, expected = [], {}, {}, []
    for i, (body, value, source, passes) in enumerate(BOUNDARY_CASES):
        name = f"m{i}"
        gates.append(gate(metric=name, **body))
        if value is not None:
            candidate[name] = value
        if source is not None:
            baseline[name] = source
        expected.append(passes)
    gates = tuple(gates)
    checker = check_all(gates, candidate, baseline).results
    suite = validate_metrics(gates, candidate, baseline)
    assert [r.passed for r in checker] == expected
    per_gate = [all(s.passed for s in suite if s.gate == i) for i in range(len(gates))]
    assert per_gate == expected
    assert [r.passed for r in combine(checker, suite)] == expected


def test_gx_can_only_make_a_gate_stricter():
    from modelpress.validators.gate_suite import SuiteResult, combine

    (passed,) = check_all((gate(metric="accuracy", value={"lower": 0.5}),), {"accuracy": 0.9}, {}).results
    (out,) = combine((passed,), (SuiteResult(0, "expect_column_values_to_be_between", "accuracy", False),))
    assert not out.passed and "Great Expectations found expect_column_values_to_be_between(accuracy) unmet" in out.reason


_GATE_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from modelpress.components.gate.step import gate_step

out = Path(sys.argv[1])
evaluation = {"task": "classification", "candidate": {"accuracy": 0.97, "size_bytes": 10.0},
              "source": {"accuracy": 0.98, "size_bytes": 40.0},
              "comparison": {"top1_agreement": 0.99, "size_ratio": 0.25, "latency_ratio_b64": 0.9},
              "checks": {"onnx_checker": {"passed": True, "detail": "valid"}},
              "environment": {"target_provider": "CPUExecutionProvider", "latency_provider": "CPUExecutionProvider"}}
(out / "evaluation.json").write_text(json.dumps(evaluation))
passed = gate_step("null", json.dumps({"gx_cross_check": sys.argv[2] == "on"}), "cpu-x86-int8",
                   json.dumps({"source": "models:/m@champion", "config_hash": "0" * 16}), out / "evaluation.json",
                   out / "verdict.json", out / "report.md")
print(json.dumps({"passed": passed, "gx_imported": "great_expectations" in sys.modules}))
"""


@pytest.mark.parametrize("cross_check", ["off", "on"])
def test_the_typed_checker_decides_and_gx_cross_checks_only_when_asked(cross_check, tmp_path):
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _GATE_IN_A_FRESH_PROCESS, str(tmp_path), cross_check],
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"passed": True, "gx_imported": cross_check == "on"}
    report = (tmp_path / "report.md").read_text()
    assert ("## Metrics table (Great Expectations)" in report) == (cross_check == "on")
