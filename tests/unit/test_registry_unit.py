"""Registry helpers without a store: retrying writes that lose a race, alias names, lineage completeness."""

import pytest

from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.names import check_alias
from modelpress.registry.retry import is_transient, retrying
from modelpress.registry.variants import LINEAGE, has_lineage


def test_transient_failures_are_retried_until_they_pass(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError('duplicate key value violates unique constraint "registered_model_alias_pk"')
        return "ok"

    assert retrying(flaky) == "ok" and len(calls) == 3


def test_other_failures_and_exhausted_retries_raise(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(ValueError, match="no such version"):
        retrying(lambda: (_ for _ in ()).throw(ValueError("no such version")))
    calls = []

    def locked():
        calls.append(1)
        raise RuntimeError("(sqlite3.OperationalError) database is locked")

    with pytest.raises(RuntimeError, match="database is locked"):
        retrying(locked, attempts=4)
    assert len(calls) == 4
    assert is_transient(RuntimeError("UNIQUE constraint failed: model_versions.name")) and not is_transient(KeyError("x"))


@pytest.mark.parametrize(("alias", "why"), [("latest", "reserved"), ("LATEST", "reserved"), ("v3", "reserved"),
                                           ("V12", "reserved"), ("9lives", "not usable"), ("has space", "not usable"),
                                           ("", "not usable"), ("a" * 64, "not usable")])
def test_reserved_or_malformed_aliases_are_refused(alias, why):
    with pytest.raises(ModelpressError, match=why):
        check_alias(alias)


def test_a_version_is_a_variant_only_with_every_lineage_tag():
    full = {t: "x" for t in LINEAGE} | {T.KIND: "variant"}
    assert has_lineage(full)
    for t in LINEAGE:
        assert not has_lineage({k: v for k, v in full.items() if k != t}), t
    assert not has_lineage(full | {T.KIND: "source"}) and not has_lineage(None)


def test_the_model_card_states_the_quantization_actually_used_not_the_targets_default():
    from modelpress.core.hardware import parse_target
    from modelpress.registry.source import SourceRef
    from modelpress.registry.variants import model_card

    source = SourceRef(name="m", version="1", uri="models:/m/1", run_id=None, tags={})
    target = parse_target("cpu-x86-int8")  # its default is static QOperator
    dynamic = {"quantize": {"settings": {"mode": "dynamic", "format": None, "weight_type": "qint8",
                                         "activation_type": None, "per_channel": False, "reduce_range": False}}}
    card = model_card(source, target, ["export_onnx", "quantize"], {"accuracy": 0.9}, dynamic)
    assert "Quantized: dynamic int8 (weights qint8), per-tensor." in card.splitlines()
    static = {"quantize": {"settings": {"mode": "static", "format": "qoperator", "weight_type": "qint8",
                                        "activation_type": "quint8", "per_channel": True, "reduce_range": True,
                                        "calibration_method": "minmax", "calibration_samples": 256,
                                        "calibration_split": "train"}}}
    card = model_card(source, target, ["export_onnx", "quantize"], {}, static)
    assert ("Quantized: static int8 (weights qint8, activations quint8), qoperator, per-channel, reduced range, "
            "minmax calibration on 256 train samples.") in card
    assert "" not in model_card(source, target, ["prune"], {}).splitlines()  # no blank lines without a note
