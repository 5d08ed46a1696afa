"""Auto-tune's choice logic, with injected measurements: what it tries, what it keeps, and why.

No timing here: quantization and measurement are replaced by tables keyed on the candidate's
settings. One test at the end tunes the real digits CNN, asserting only behaviour (a kept candidate,
every candidate recorded, the report), never a speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpress.components.quantize import ort_quantize, tune
from modelpress.components.quantize.settings import QuantizeConfig, QuantSettings
from modelpress.core.config import parse_config
from modelpress.core.hardware import parse_target
from modelpress.core.technique import Result, get_technique
from modelpress.errors import ModelpressError
from modelpress.validators.gates import Gate

ACCURACY = Gate(metric="accuracy", direction="higher_is_better", change={"max_degradation": 0.01})
NOT_SLOWER = Gate(metric="latency_ratio_b64", direction="lower_is_better", value={"upper": 1.0})


def key(s: QuantSettings) -> str:
    """A short name for the settings the fake measurements are keyed on."""
    if s.float_op_types:
        return f"float:{'+'.join(s.float_op_types)}"
    if s.mode == "dynamic":
        return "dynamic"
    for knob, default in (("format", "qoperator"), ("per_channel", True), ("reduce_range", True),
                          ("calibration_method", "minmax")):
        if getattr(s, knob) != default:
            return f"{knob}:{getattr(s, knob)}"
    return "default"


class Fake:
    """Measurements per candidate: (latency ratio, size bytes, accuracy); the source is 1.0x, 1000 bytes, 0.98."""

    def __init__(self, table: dict[str, tuple[float, float, float]]) -> None:
        self.table, self.built, self.scored = table, [], []
        self.dirs: dict[Path, str] = {}

    def quantize_once(self, model_dir, data, settings, out_dir):
        name = key(settings)
        self.built.append(name)
        if name not in self.table:
            raise ModelpressError(f"nothing in model.onnx was converted ({name})", "try another mode")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.onnx").write_text(name)
        self.dirs[out_dir] = name
        return Result(model_dir=out_dir, metrics={"size_bytes": self.table[name][1]},
                      notes={"settings": settings.to_dict()})

    def bench(self, *args, **kwargs):
        fake = self

        class Bench:
            task, provider = "classification", "CPUExecutionProvider"

            def session(self, model_dir):
                return fake.dirs[model_dir]  # the candidate's name stands in for its session

            def latency(self, name, runs):
                return fake.table[name][0] * 0.2, 0.2

            def scores(self, name, size):
                fake.scored.append(name)
                return {"accuracy": fake.table[name][2], "size_bytes": fake.table[name][1]}, \
                    {"accuracy": 0.98, "size_bytes": 1000.0}

        return Bench()


@pytest.fixture
def fake(monkeypatch):
    def install(table, op_types=("Conv", "Gemm")):
        f = Fake(table)
        monkeypatch.setattr(ort_quantize, "quantize_once", f.quantize_once)
        monkeypatch.setattr(tune, "Bench", f.bench)
        monkeypatch.setattr(tune, "graph_facts", lambda model_dir: (list(op_types), False))
        return f
    return install


def run_tune(tmp_path, gates=(ACCURACY,), target="cpu-x86-int8", **section):
    config = parse_config(QuantizeConfig, {"tune": {}, **section}, "quantize")
    said: list[str] = []
    result = get_technique("quantize").apply(tmp_path / "in", object(), config, parse_target(target), tmp_path / "out",
                                             tuning=tune.TuneContext(gates=gates, say=said.append))
    return result, said


# Every knob has a measurement; "float:Conv" is the only one faster than the source.
TABLE = {"default": (1.6, 320, 0.98), "dynamic": (9.0, 350, 0.98), "format:qdq": (1.6, 400, 0.98),
         "per_channel:False": (1.7, 310, 0.975), "reduce_range:False": (1.6, 320, 0.98),
         "calibration_method:entropy": (1.7, 320, 0.98), "calibration_method:percentile": (1.6, 320, 0.98),
         "float:Conv": (0.8, 560, 0.98), "float:Gemm": (1.5, 700, 0.98)}


def test_latency_objective_keeps_the_fastest_candidate_that_passes_and_records_every_one(fake, tmp_path):
    f = fake(TABLE)
    result, said = run_tune(tmp_path, gates=(ACCURACY, NOT_SLOWER))
    tuned = result.notes["tune"]
    assert tuned["chosen_label"].endswith("Conv float")
    assert (tmp_path / "out" / "model.onnx").read_text() == "float:Conv"
    assert result.metrics["tune_chosen"] == tuned["chosen"] + 1
    # One knob at a time, each tried once; duplicates (a dynamic candidate differing only in static keys) skipped.
    assert f.built == ["default", "dynamic", "format:qdq", "per_channel:False", "reduce_range:False",
                       "calibration_method:entropy", "calibration_method:percentile", "float:Conv", "float:Gemm"]
    assert [c["passed"] for c in tuned["candidates"]] == [False] * 7 + [True, False]
    assert "latency_ratio_b64" in tuned["candidates"][0]["failed"][0]
    # float:Gemm is 1.5x against the kept 0.8x: it cannot win, so its accuracy is never scored.
    assert "float:Gemm" not in f.scored and tuned["candidates"][-1]["status"].startswith("cannot win")
    assert said[-1].startswith("tune: kept 8/9")
    assert result.notes["tune"]["why"] == "passes the gates on val"


def test_size_objective_keeps_the_smallest_passing_file_and_skips_larger_ones_unmeasured(fake, tmp_path):
    f = fake(TABLE)
    result, _ = run_tune(tmp_path, tune={"objective": "size"})
    # per_channel:False is smallest (310) but loses 0.5 pt, within the 1-pt gate: it is kept.
    assert (tmp_path / "out" / "model.onnx").read_text() == "per_channel:False"
    statuses = {c["label"]: c["status"] for c in result.notes["tune"]["candidates"]}
    larger = [label for label, s in statuses.items() if s.startswith("cannot win: larger")]
    assert larger and "format:qdq" not in f.scored


def test_a_gate_failure_is_worse_than_any_objective(fake, tmp_path):
    table = {**TABLE, "per_channel:False": (1.7, 100, 0.90)}  # tiny, but 8 pt less accurate
    fake(table)
    result, _ = run_tune(tmp_path, tune={"objective": "size"})
    assert (tmp_path / "out" / "model.onnx").read_text() != "per_channel:False"
    cand = next(c for c in result.notes["tune"]["candidates"] if c["label"].endswith("per-tensor reduce-range"))
    assert not cand["passed"] and "accuracy" in cand["failed"][0]


def test_keys_the_recipe_sets_are_not_tuned(fake, tmp_path):
    f = fake(TABLE)
    run_tune(tmp_path, mode="static", format="qoperator", per_channel=True, reduce_range=True,
             calibration_method="minmax", float_op_types=["Gemm"])
    assert f.built == ["float:Gemm"]  # nothing left to vary


def test_when_nothing_passes_the_closest_is_kept_and_the_reason_recorded(fake, tmp_path):
    fake({k: v for k, v in TABLE.items() if not k.startswith("float")})
    result, said = run_tune(tmp_path, gates=(ACCURACY, NOT_SLOWER), tune={"float_op_types": False})
    why = result.notes["tune"]["why"]
    assert why.startswith("no candidate passed the gates on val; kept the closest") and "latency_ratio_b64" in why
    assert "no candidate passed" in said[-1]


def test_candidates_that_cannot_be_built_are_recorded_and_skipped(fake, tmp_path):
    fake({k: v for k, v in TABLE.items() if k != "dynamic"})
    result, _ = run_tune(tmp_path)
    dyn = next(c for c in result.notes["tune"]["candidates"] if c["label"].startswith("dynamic"))
    assert dyn["status"].startswith("not built: nothing in model.onnx was converted")


def test_the_budget_caps_the_candidates(fake, tmp_path):
    f = fake(TABLE)
    result, _ = run_tune(tmp_path, tune={"max_candidates": 3})
    assert len(f.built) == 3 and result.metrics["tune_candidates"] == 3


def test_a_starting_point_that_cannot_be_built_is_one_line(fake, tmp_path):
    fake({k: v for k, v in TABLE.items() if k != "default"})
    with pytest.raises(ModelpressError, match="starting candidate .* could not be built"):
        run_tune(tmp_path)


def test_tune_settings_are_bounded_and_typed():
    with pytest.raises(ModelpressError, match="max_candidates"):
        parse_config(QuantizeConfig, {"tune": {"max_candidates": 0}}, "quantize")
    with pytest.raises(ModelpressError, match="objective"):
        parse_config(QuantizeConfig, {"tune": {"objective": "speed"}}, "quantize")
    with pytest.raises(ModelpressError, match="split"):
        parse_config(QuantizeConfig, {"tune": {"split": "test"}}, "quantize")


def test_tuning_the_real_digits_cnn_records_each_candidate_and_reports_them(tmp_path):
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    data = load_dataset("sklearn-digits")
    module = build_model(DigitsCNNSpec(), seed=0).eval()
    src = export_onnx(artifacts.save_torch(tmp_path / "torch", module, DigitsCNNSpec(),
                                           artifacts.TensorSpec(shape=(1, 8, 8)), dataset="sklearn-digits"),
                      tmp_path / "onnx")
    config = parse_config(QuantizeConfig, {"tune": {"latency_runs": 5, "max_candidates": 4}}, "quantize")
    technique = get_technique("quantize")
    result = technique.apply(src, data, config, parse_target("cpu-x86-int8"), tmp_path / "out",
                             tuning=tune.TuneContext(gates=(ACCURACY,)))
    tuned = result.notes["tune"]
    assert len(tuned["candidates"]) == 4 and 0 <= tuned["chosen"] < 4
    assert artifacts.onnx_file(tmp_path / "out").is_file()
    assert result.notes["settings"]["mode"] in ("static", "dynamic")
    assert technique.variant_tags(result.notes) == {"modelpress.quantize.tuned": tuned["chosen_label"]}
    section = technique.report_section(result.notes)
    assert section.count("<tr>") == 5 and "kept" in section


def test_a_long_note_is_tagged_as_json_that_parses():
    import json

    from modelpress.registry.variants import NOTE_TAG_CHARS, note_tag

    note = {"settings": {"mode": "static"}, "stayed_float": {f"node{i}": "x" * 40 for i in range(200)},
            "tune": {"candidates": [{"label": "y" * 50}] * 20}}
    tag = note_tag(note)
    assert len(tag) <= NOTE_TAG_CHARS
    assert json.loads(tag) == {"settings": {"mode": "static"}, "stayed_float": "in technique_notes.json",
                               "tune": {"candidates": [{"label": "y" * 50}] * 20}}
    assert json.loads(note_tag({"a": 1})) == {"a": 1}


def test_each_stage_starts_from_the_best_so_far(fake, tmp_path):
    """Coordinate descent: once reduce-range off wins, the calibration and op-type candidates keep it off."""
    fake({**TABLE, "reduce_range:False": (0.9, 320, 0.98)})
    result, _ = run_tune(tmp_path, gates=(ACCURACY, NOT_SLOWER))
    labels = [c["label"] for c in result.notes["tune"]["candidates"]]
    after = labels[labels.index("static qoperator minmax per-channel") + 1:]
    assert after and all("reduce-range" not in label for label in after)
