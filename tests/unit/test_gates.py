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
