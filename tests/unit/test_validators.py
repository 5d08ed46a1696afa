"""Per-target gates, gates refused at load when nothing measures them, model checks, and GX data checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modelpress.core.config import parse_config
from modelpress.core.data import Split, load_dataset
from modelpress.errors import ModelpressError
from modelpress.pipelines.metrics import produced_metrics
from modelpress.pipelines.recipe import Recipe, load_recipe
from modelpress.validators.data_checks import DataChecksConfig, check_dataset, render_markdown
from modelpress.validators.gates import Gate, gates_for
from modelpress.validators.model_checks import ModelChecksConfig, check_model

ACC = {"metric": "accuracy", "change": {"max_degradation": 0.01}}


# ------------------------------------------------------------------ gates per target

def test_gate_targets_are_canonical_and_filter():
    g = parse_config(Gate, {**ACC, "targets": [" CPU-X86-INT8 "]}, "gate")
    assert g.targets == ("cpu-x86-int8",)
    everywhere = parse_config(Gate, ACC, "gate")
    assert gates_for((g, everywhere), "cpu-x86-int8") == (g, everywhere)
    assert gates_for((g, everywhere), "nvidia-trt-int8") == (everywhere,)


def test_gate_on_an_unknown_target_is_refused():
    with pytest.raises(ModelpressError, match="unknown hardware target 'tpu-v9'"):
        parse_config(Gate, {**ACC, "targets": ["tpu-v9"]}, "gate")


def test_recipe_uses_only_its_targets_gates():
    r = load_recipe(target="cpu-arm64-int8", gates=[ACC, {**ACC, "metric": "size_ratio", "targets": ["cpu-x86-int8"]}])
    assert [g.metric for g in r.active_gates("classification")] == ["accuracy", "latency_ratio_b64"]


def test_recipe_with_no_gate_for_its_target_is_refused():
    with pytest.raises(ModelpressError, match="no gate applies to target cpu-x86-int8"):
        load_recipe(gates=[{**ACC, "targets": ["nvidia-trt-int8"]}])


# ------------------------------------------------------------------ compile-time metric check

@pytest.mark.parametrize("metric", ["acuracy", "latency_p95_ms_b32", "prune_macs_ratio", "deep_compress_compression_ratio"])
def test_gate_on_a_metric_nothing_produces_is_refused_naming_it(metric):
    with pytest.raises(ModelpressError) as exc:
        load_recipe(gates=[{"metric": metric, "value": {"lower": 0}}])
    msg = str(exc.value)
    assert f"gate on {metric!r}: no step of this recipe produces that metric" in msg and "\n" not in msg


def test_technique_metrics_are_gateable_when_the_technique_runs():
    r = load_recipe(prune={"method": "unstructured", "ratio": 0.5},
                    gates=[ACC, {"metric": "prune_weight_sparsity", "value": {"lower": 0.4}}])
    produced = produced_metrics(r)
    assert {"prune_weight_sparsity", "prune_macs_ratio", "latency_p95_ms_b64", "top1_agreement"} <= produced
    assert "prune_weight_sparsity" not in produced_metrics(load_recipe(prune={"method": "structured", "ratio": 0.5}))


def test_compile_refuses_such_a_recipe(tmp_path):
    from modelpress.cli import main

    bad = tmp_path / "r.yaml"
    bad.write_text("gates:\n  - {metric: latency_p99_ms_b1, value: {upper: 2}}\n")
    assert main(["compile", "--recipe", str(bad), "-o", str(tmp_path / "p.yaml")]) == 2
    assert not (tmp_path / "p.yaml").exists()


# ------------------------------------------------------------------ model checks

def _evaluation(**over):
    ev = {"checks": {"onnx_checker": {"passed": True, "detail": "valid"}},
          "environment": {"target_provider": "CPUExecutionProvider", "latency_provider": "CPUExecutionProvider"},
          "comparison": {"top1_agreement": 0.95, "max_abs_logit_diff": 0.2}}
    for k, v in over.items():
        ev[k] = {**ev[k], **v}
    return ev


def test_model_checks_pass_and_fail_at_their_boundaries():
    cfg = ModelChecksConfig(min_top1_agreement=0.95, max_abs_logit_diff=0.2)
    assert all(r.passed for r in check_model(_evaluation(), cfg))
    failed = [r.reason for r in check_model(
        _evaluation(comparison={"top1_agreement": 0.9499, "max_abs_logit_diff": 0.2001}), cfg) if not r.passed]
    assert failed == ["model: top1_agreement: 0.9499 (needs >= 0.95)", "model: max_abs_logit_diff: 0.2001 (needs <= 0.2)"]


def test_a_cpu_fallback_does_not_stand_in_for_the_target_provider():
    ev = _evaluation(environment={"target_provider": "TensorrtExecutionProvider", "latency_provider": None,
                                  "latency_unavailable": "TensorrtExecutionProvider is not installed"})
    (provider,) = [r for r in check_model(ev, ModelChecksConfig()) if r.metric == "model: target provider"]
    assert not provider.passed and "TensorrtExecutionProvider is not installed" in provider.reason
    assert all(r.metric != "model: target provider" for r in
               check_model(ev, ModelChecksConfig(require_target_provider=False)))


def test_onnx_checker_failure_and_absence_fail():
    bad = _evaluation(checks={"onnx_checker": {"passed": False, "detail": "Field 'type' of 'value_info' is required"}})
    assert [r.reason for r in check_model(bad, ModelChecksConfig()) if not r.passed] == [
        "model: onnx checker: Field 'type' of 'value_info' is required"]
    assert not check_model({"comparison": {"top1_agreement": 1.0}}, ModelChecksConfig())[0].passed


# ------------------------------------------------------------------ data checks (real GX)

@pytest.fixture(scope="module")
def digits():
    return load_dataset("sklearn-digits")


def _failures(data, **cfg):
    return [(r.split, r.name) for r in check_dataset(data, DataChecksConfig(**cfg)).failures]


def test_clean_digits_meet_every_expectation(digits):
    report = check_dataset(digits, DataChecksConfig(value_range=(0.0, 1.0)))
    assert report.passed, report.reason()
    assert len(report.results) == 24  # 8 expectations x 3 splits
    assert "| test | expect_column_values_to_be_between | input.nan_count | pass |" in render_markdown(report)


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_split_is_one_line_not_a_crash(digits, split):
    empty = digits.with_split(split, x=digits.x_test[:0], y=digits.y_test[:0])
    with pytest.raises(ModelpressError, match=f"the {split} split has no samples") as err:
        check_dataset(empty, DataChecksConfig())
    assert "data.split" in str(err.value)


def test_nan_and_infinity_are_named(digits):
    x = digits.x_test.copy()
    x[3, 0, 1, 1] = np.nan
    x[5, 0, 2, 2] = np.inf
    assert _failures(digits.with_split("test", x=x)) == [
        ("test", "expect_column_values_to_be_between(input.nan_count)"),
        ("test", "expect_column_values_to_be_between(input.inf_count)")]


def test_values_outside_the_range(digits):
    x = digits.x_val * 16.0  # unscaled pixels
    assert _failures(digits.with_split("val", x=x)) == [("val", "expect_column_values_to_be_between(input.out_of_range)")]
    assert _failures(digits, value_range=(0.0, 0.5)) == [
        (s, "expect_column_values_to_be_between(input.out_of_range)") for s in ("train", "val", "test")]
    x = digits.x_test.copy()
    x[9, 0, 3, 3] = -999.0  # a sentinel in one pixel
    assert _failures(digits.with_split("test", x=x)) == [("test", "expect_column_values_to_be_between(input.out_of_range)")]


def test_standardized_features_pass_and_integer_ids_are_held_to_the_vocabulary():
    """Real tabular data standardized on train goes past train's extremes in test; that is no error."""
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from modelpress.core.data import DatasetSplits

    for load in (load_wine, load_breast_cancer):
        x, y = load(return_X_y=True)
        rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        x_train, x_val, y_train, y_val = train_test_split(rest, y_rest, test_size=0.125, stratify=y_rest,
                                                          random_state=0)
        scale = StandardScaler().fit(x_train)
        data = DatasetSplits.single(load.__name__, 0, *(a.astype(np.float32) if a.ndim == 2 else a for a in (
            scale.transform(x_train), y_train, scale.transform(x_val), y_val, scale.transform(x_test), y_test)))
        assert _failures(data) == [], load.__name__
        assert (data.x_test.max(0) > data.x_train.max(0)).any()  # the old train-range rule failed here
    ids = np.random.default_rng(0).integers(0, 1000, size=(60, 16))
    mask = np.ones_like(ids)
    base = DatasetSplits("tokens", 0, *(Split({"input_ids": ids, "attention_mask": mask}) for _ in range(3)),
                         info={"task": "embedding", "vocabularies": {"input_ids": 1000}})
    assert _failures(base) == []
    bad = ids.copy()
    bad[4, 2] = 1000  # one id past the embedding table
    oov = dataclasses.replace(base, test=Split({"input_ids": bad, "attention_mask": mask}))
    assert _failures(oov) == [("test", "expect_column_values_to_be_between(input_ids.out_of_range)")]


def test_unknown_labels_and_missing_classes(digits):
    y = digits.y_test.copy()
    y[0] = 11
    assert _failures(digits.with_split("test", y=y)) == [
        ("test", "expect_column_values_to_be_in_set(label)"),
        ("test", "expect_column_values_to_be_between(share)")]  # one image of class 11 is also a tiny class
    keep = digits.y_val != 3
    one_short = digits.with_split("val", x=digits.x_val[keep], y=digits.y_val[keep])
    assert _failures(one_short) == [("val", "expect_column_distinct_values_to_contain_set(label)")]


def test_class_imbalance(digits):
    keep = (digits.y_test != 7) | (np.cumsum(digits.y_test == 7) <= 2)  # 2 sevens of 360
    skewed = digits.with_split("test", x=digits.x_test[keep], y=digits.y_test[keep])
    assert _failures(skewed) == [("test", "expect_column_values_to_be_between(share)")]


def test_wrong_shape(digits):
    x = np.zeros((len(digits.y_test), 1, 8, 7), dtype=np.float32)
    assert _failures(digits.with_split("test", x=x)) == [
        ("test", "expect_column_values_to_be_between(input.feature_count)")]


def test_data_checks_config_is_bounded():
    with pytest.raises(ModelpressError, match="value_range low 1.0 is above high 0.0"):
        load_recipe(data_checks={"value_range": [1, 0]})
    with pytest.raises(ModelpressError, match="data_checks.min_class_share"):
        load_recipe(data_checks={"min_class_share": 0})
    assert Recipe().config_hash() == load_recipe(data_checks={"min_rows": 5}).config_hash()
