"""Data by URI, bound to model inputs, and the task it implies: each rule and each refusal, no services."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelpress.core.artifacts import ModelManifest, TensorSpec
from modelpress.core.binding import bind
from modelpress.core.data_source import DataConfig, read_data
from modelpress.core.tasks import TaskConfig, infer_task
from modelpress.errors import ModelpressError


def _read(path, **cfg):
    return read_data(DataConfig(uri=str(path), **cfg), None, None, None)


def _manifest(*inputs: TensorSpec, classes: int = 3) -> ModelManifest:
    return ModelManifest(format="onnx", inputs=inputs, outputs=(TensorSpec(name="logits", shape=(classes,)),))


@pytest.fixture
def wine_csv(tmp_path):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def test_seeded_stratified_split_is_recorded_and_reproducible(wine_csv):
    raw = _read(wine_csv)
    assert raw.label == "target"
    split = raw.provenance["split"]
    assert split["method"] == "seeded" and split["stratified"] and split["seed"] == 20160201
    assert [len(raw.tables[s]["target"]) for s in ("train", "val", "test")] == [124, 18, 36]
    assert np.array_equal(_read(wine_csv).tables["test"]["alcohol"], raw.tables["test"]["alcohol"])
    splits, note = bind(raw, _manifest(TensorSpec(name="features", shape=(13,))), DataConfig())
    assert splits["train"].inputs["features"].shape == (124, 13)
    assert splits["train"].inputs["features"].dtype == np.float32
    assert note["inputs"]["features"].startswith("from 13 columns (alcohol ... proline); float64 -> float32")


def test_split_column_list_columns_and_per_split_files(tmp_path):
    rows = 12
    frame = pd.DataFrame({"input_ids": [list(range(i, i + 5)) for i in range(rows)],
                          "attention_mask": [[1, 1, 1, 0, 0]] * rows,
                          "split": ["train"] * 6 + ["validation"] * 3 + ["test"] * 3})
    frame.to_parquet(tmp_path / "tokens.parquet")
    raw = _read(tmp_path / "tokens.parquet")
    assert raw.label is None and raw.provenance["split"] == {"method": "column split"}
    assert raw.tables["val"]["input_ids"].shape == (3, 5)
    specs = (TensorSpec(name="input_ids", shape=("sequence",), dtype="int64"),
             TensorSpec(name="attention_mask", shape=("sequence",), dtype="int64"))
    splits, _ = bind(raw, _manifest(*specs), DataConfig())
    assert splits["test"].inputs["attention_mask"].dtype == np.int64

    frame.iloc[:9].drop(columns="split").to_parquet(tmp_path / "train.parquet")
    frame.iloc[9:].drop(columns="split").to_parquet(tmp_path / "test.parquet")
    raw = read_data(DataConfig(train=str(tmp_path / "train.parquet"), test=str(tmp_path / "test.parquet"),
                               split={"val": 0.3}), None, None, None)
    assert raw.provenance["split"]["method"] == "files; val drawn from train"
    assert [len(raw.tables[s]["input_ids"]) for s in ("train", "val", "test")] == [6, 3, 3]


def test_npz_arrays_named_by_split_and_reshaped_to_the_model(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{k}_{s}": (rng.random((n, 64)) if k == "x" else rng.integers(0, 10, n))
              for s, n in (("train", 20), ("val", 5), ("test", 5)) for k in ("x", "y")}
    np.savez(tmp_path / "digits.npz", **arrays)
    raw = _read(tmp_path / "digits.npz")
    assert raw.label == "y" and raw.provenance["split"]["method"] == "files"
    splits, note = bind(raw, _manifest(TensorSpec(name="input", shape=(1, 8, 8)), classes=10), DataConfig())
    assert splits["val"].inputs["input"].shape == (5, 1, 8, 8)
    assert "reshaped (64,) -> (1, 8, 8)" in note["inputs"]["input"]


@pytest.mark.parametrize(("change", "cfg", "needle"), [
    (lambda f: f.assign(input_ids=f.input_ids.map(lambda v: [float(x) + 0.5 for x in v])), {},
     "dtype mismatch: data column 'input_ids' holds float64, but model input 'input_ids' takes int64"),
    (lambda f: f.drop(columns="attention_mask"), {}, "model input 'attention_mask' is not a column of the data"),
    (lambda f: f[f.split != "test"], {}, "the test split of the data is empty (split by: column split)"),
    (lambda f: f, {"inputs": {"token_ids": "input_ids"}}, "data.inputs names ['token_ids']"),
    (lambda f: f, {"label": "target"}, "data.label 'target' is not a column"),
    (lambda f: f.assign(split="holdout"), {}, "split column 'split' holds ['holdout'], not train/val/test"),
    (lambda f: f.assign(input_ids=[list(range(i % 3 + 3)) for i in range(len(f))]), {},
     "data column 'input_ids' holds lists of different lengths (3 to 5)"),
    (lambda f: f.assign(attention_mask=[[1, 1, 1, 1]] * len(f)), {},
     "inputs 'input_ids' and 'attention_mask' share axis 'sequence' but the data gives them lengths 5 and 4"),
], ids=["lossy-dtype", "input-not-provided", "empty-split", "unknown-input", "missing-label", "bad-split-name",
        "ragged-lists", "axis-lengths"])
def test_each_bad_binding_is_one_line(tmp_path, change, cfg, needle):
    frame = pd.DataFrame({"input_ids": [list(range(i, i + 5)) for i in range(12)],
                          "attention_mask": [[1] * 5] * 12, "split": ["train"] * 6 + ["val"] * 3 + ["test"] * 3})
    change(frame).to_parquet(tmp_path / "d.parquet")
    specs = (TensorSpec(name="input_ids", shape=("sequence",), dtype="int64"),
             TensorSpec(name="attention_mask", shape=("sequence",), dtype="int64"))
    with pytest.raises(ModelpressError) as exc:
        config = DataConfig(uri=str(tmp_path / "d.parquet"), **cfg)
        bind(read_data(config, None, None, None), _manifest(*specs), config)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_file_and_an_unknown_format_are_one_line(tmp_path):
    with pytest.raises(ModelpressError, match="data file .*nope.parquet not found"):
        _read(tmp_path / "nope.parquet")
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(ModelpressError, match="cannot tell the format of d.txt"):
        _read(tmp_path / "d.txt")
    with pytest.raises(ModelpressError, match="give the data one way, not uri and run_input"):
        from modelpress.core.config import parse_config

        parse_config(DataConfig, {"uri": "x.csv", "run_input": {"name": "wine"}}, "data")


def test_task_inference_says_why_and_checks_the_labels():
    logits = TensorSpec(name="logits", shape=(3,))
    auto = TaskConfig()
    assert infer_task(auto, None, logits) == ("embedding", "the data has no labels")
    assert infer_task(auto, np.array([0, 2, 1]), logits)[0] == "classification"
    assert infer_task(auto, np.array([0.0, 1.0, 2.0]), logits)[0] == "classification"  # CSV floats, whole
    assert infer_task(auto, np.array([151.0, 75.5]), TensorSpec(name="y", shape=(1,))) == (
        "regression", "labels are not integers")
    with pytest.raises(ModelpressError, match="labels run from 0 to 3, but output 'logits' scores 3 classes"):
        infer_task(auto, np.array([0, 3]), logits)
    with pytest.raises(ModelpressError, match="task classification needs labels, and the data has none"):
        infer_task(TaskConfig(kind="classification"), None, logits)


def test_scores_per_task():
    from modelpress.components.evaluate.scoring import compare, score
    from modelpress.core.data import Split

    mask = np.array([[1, 1, 0], [1, 0, 0]])
    hidden = np.random.default_rng(0).normal(size=(2, 3, 4))
    noisy = hidden.copy()
    noisy[:, 2] += 100.0  # padding positions: ignored under mean pooling
    part = Split({"input_ids": np.zeros((2, 3), np.int64), "attention_mask": mask})
    info = {"pooling": "mean", "mask_input": "attention_mask"}
    s = score("embedding", noisy, hidden, part, info)
    assert s["cosine_mean"] == pytest.approx(1.0) and s["cosine_min"] == pytest.approx(1.0)
    assert score("embedding", noisy, hidden, part, {"pooling": "none"})["cosine_min"] < 0.9
    reg = Split({"x": np.zeros((2, 1))}, np.array([[1.0], [3.0]], np.float32))
    assert score("regression", np.array([[2.0], [3.0]]), None, reg, {}) == {"mae": 0.5, "rmse": pytest.approx(0.5**0.5)}
    scores = {"candidate": {"accuracy": 0.5}, "source": {"accuracy": 1.0}}
    c = compare("classification", np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 0.5]]), scores)
    assert c == {"max_abs_diff": 1.0, "max_abs_logit_diff": 1.0, "top1_agreement": 0.5, "accuracy_delta": -0.5}


def test_onnx_with_external_weights_and_dynamic_axes_becomes_one_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from modelpress.core import artifacts

    w = numpy_helper.from_array(np.ones((384, 16), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"]), helper.make_node("MatMul", ["emb", "w"], ["out"])],
        "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", 16])],
        [w, numpy_helper.from_array(np.zeros((100, 384), np.float32), "table")])
    src = tmp_path / "logged"
    src.mkdir()
    onnx.save_model(helper.make_model(graph), str(src / "model.onnx"), save_as_external_data=True,
                    location="3f1c.data", size_threshold=0)
    assert (src / "3f1c.data").is_file()
    out = artifacts.save_onnx(tmp_path / "folder", artifacts.check_onnx(src / "model.onnx", "logged"))
    manifest = artifacts.read_manifest(out)
    assert [p.name for p in sorted(out.iterdir())] == ["manifest.json", "model.onnx"]
    assert manifest.inputs == (TensorSpec(name="ids", shape=("sequence",), dtype="int64"),)
    assert manifest.outputs[0].shape == ("sequence", 16)
    from modelpress.core.binding import vocabularies

    assert vocabularies(out / "model.onnx") == {"ids": 100}


def test_manifests_written_before_multi_input_still_read():
    m = ModelManifest.model_validate({"format": "onnx", "input": {"name": "input", "shape": [1, 8, 8]}})
    assert m.input == TensorSpec(name="input", shape=(1, 8, 8))


def test_the_source_tag_still_names_the_data(wine_csv):
    raw = read_data(DataConfig(label="target"), str(wine_csv), None, None)
    assert raw.provenance["uri"] == str(wine_csv) and raw.label == "target"
    with pytest.raises(ModelpressError, match="no data to evaluate the model on"):
        read_data(DataConfig(), None, None, None)


def test_the_scored_output_is_chosen_by_name():
    from modelpress.components.resolve.run_data import _scored_output

    m = ModelManifest(format="onnx", inputs=(TensorSpec(name="x", shape=(4,)),),
                      outputs=(TensorSpec(name="logits", shape=(3,)), TensorSpec(name="probs", shape=(3,))))
    assert _scored_output(None, m).name == "logits"
    assert _scored_output("probs", m).name == "probs"
    with pytest.raises(ModelpressError, match=r"task.output 'emb' is not an output of the model \(outputs: logits, probs\)"):
        _scored_output("emb", m)


def test_a_crash_inside_a_task_reaches_the_cli_as_one_line(tmp_path, monkeypatch):
    from modelpress.components.task import ERROR_FILE_ENV, user_errors

    reason = tmp_path / "reason.txt"
    monkeypatch.setenv(ERROR_FILE_ENV, str(reason))
    with pytest.raises(SystemExit), user_errors("evaluate"):
        raise IndexError("index 7 is out of bounds\nfor axis 0")
    assert reason.read_text().splitlines() == [
        "evaluate crashed: IndexError: index 7 is out of bounds; this is a modelpress bug or an input it does not "
        "check yet: please report it with the task log"]


def test_torch_training_steps_need_class_labels():
    """prune/distill/deep_compress/QAT train with cross-entropy: a regression run is refused up front."""
    from modelpress.components.resolve.run_data import _training_needs_classes
    from modelpress.pipelines.arguments import resolve_config
    from modelpress.pipelines.recipe import Recipe

    pruning = resolve_config(Recipe(targets=("cpu-x86-fp32",), prune={"method": "structured", "ratio": 0.5}))
    _training_needs_classes(pruning, "classification", "integer labels")
    with pytest.raises(ModelpressError, match="prune fine-tune on class labels, but this run's task is regression"):
        _training_needs_classes(pruning, "regression", "float labels")
    _training_needs_classes(resolve_config(Recipe()), "regression", "float labels")  # quantize alone: any task
