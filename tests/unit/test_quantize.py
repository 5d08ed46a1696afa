"""Quantization mechanics on a small CNN: modes, formats, calibration, reports and refusals.

Accuracy claims live in benchmarks/ and in the end-to-end gate; these tests check behaviour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelpress.components.export_onnx.onnx_export import export_onnx
from modelpress.components.quantize.settings import QuantizeConfig, settings_for
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits, load_dataset
from modelpress.core.hardware import parse_target
from modelpress.core.technique import get_technique
from modelpress.errors import ModelpressError
from modelpress.models.zoo import DigitsCNNSpec, build_model


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    return load_dataset("sklearn-digits")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cnn")
    module = build_model(DigitsCNNSpec(), seed=0).eval()
    torch_dir = artifacts.save_torch(tmp / "torch", module, DigitsCNNSpec(),
                                     artifacts.TensorSpec(shape=(1, 8, 8)), dataset="sklearn-digits")
    return export_onnx(torch_dir, tmp / "onnx")


def quantize(onnx_dir, data, tmp_path, target="cpu-x86-int8", **cfg):
    return get_technique("quantize").apply(
        onnx_dir, data, QuantizeConfig(**cfg), parse_target(target), tmp_path / "q"
    )


def run(model_dir: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(artifacts.onnx_file(model_dir)), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_x86_default_is_static_qoperator(onnx_dir, data, tmp_path):
    r = quantize(onnx_dir, data, tmp_path)
    s = r.notes["settings"]
    assert (s["mode"], s["format"], s["per_channel"], s["reduce_range"]) == ("static", "qoperator", True, True)
    assert r.notes["quantized_by_op"] == {"QGemm": 2, "QLinearConv": 2}
    assert r.notes["calibration"] == {"dataset": "sklearn-digits", "split": "train", "samples": 256}
    assert r.metrics["size_ratio"] < 0.40
    assert run(r.model_dir, data.x_test[:4]).shape == (4, 10)


def test_symbolic_shape_inference_only_where_onnx_leaves_a_tensor_untyped(onnx_dir, data, tmp_path, monkeypatch):
    """It costs a torch and sympy import per task; on a fully typed graph it changes no byte of the result."""
    from modelpress.components.quantize import ort_quantize

    assert ort_quantize._untyped_outputs(artifacts.onnx_file(onnx_dir)) == 0
    plain = quantize(onnx_dir, data, tmp_path / "plain")
    assert plain.notes["preprocess"].startswith("applied without symbolic shape inference (ONNX shape inference")
    monkeypatch.setattr(ort_quantize, "_untyped_outputs", lambda src: 1)  # as if a tensor were left untyped
    symbolic = quantize(onnx_dir, data, tmp_path / "symbolic")
    assert symbolic.notes["preprocess"].startswith("applied, with symbolic shape inference")
    assert artifacts.onnx_file(plain.model_dir).read_bytes() == artifacts.onnx_file(symbolic.model_dir).read_bytes()


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_static_methods_and_formats(onnx_dir, data, tmp_path, method, fmt):
    r = quantize(onnx_dir, data, tmp_path, calibration_method=method, format=fmt, calibration_samples=64)
    assert r.notes["settings"]["calibration_method"] == method
    assert r.metrics["quantized_nodes"] == 4
    if fmt == "qdq":
        assert r.notes["qdq_pairs"] >= 4 and set(r.notes["quantized_by_op"]) == {"Conv", "Gemm"}
    else:
        assert set(r.notes["quantized_by_op"]) == {"QLinearConv", "QGemm"}


def test_trt_target_is_symmetric_s8s8_qdq(onnx_dir, data, tmp_path):
    r = quantize(onnx_dir, data, tmp_path, target="nvidia-trt-int8", calibration_samples=64)
    s = r.notes["settings"]
    assert (s["format"], s["activation_type"], s["weight_type"], s["symmetric_activations"]) == (
        "qdq", "qint8", "qint8", True)


def test_dynamic_mode(onnx_dir, data, tmp_path):
    r = quantize(onnx_dir, None, tmp_path, mode="dynamic")
    assert set(r.notes["quantized_by_op"]) == {"ConvInteger", "MatMulInteger"}


def test_fp16_for_gpu_target(onnx_dir, data, tmp_path):
    r = quantize(onnx_dir, None, tmp_path, target="nvidia-cuda-fp16")
    assert r.notes["fp16_initializers"] > 0 and r.notes["fp32_initializers"] == 0
    assert 0.45 < r.metrics["size_ratio"] < 0.6
    x = data.x_test[:16]
    np.testing.assert_allclose(run(r.model_dir, x), run(onnx_dir, x), atol=2e-2)  # float32 in and out


def test_recipe_override_beats_target_default(onnx_dir, data, tmp_path):
    r = quantize(onnx_dir, data, tmp_path, reduce_range=False, format="qdq", calibration_samples=32)
    assert r.notes["settings"]["reduce_range"] is False and r.notes["settings"]["format"] == "qdq"


def test_excluded_node_stays_float_with_reason(onnx_dir, data, tmp_path):
    import onnx

    conv = next(n.name for n in onnx.load(str(onnx_dir / "model.onnx")).graph.node if n.op_type == "Conv")
    r = quantize(onnx_dir, data, tmp_path, format="qdq", nodes_to_exclude=(conv,), calibration_samples=32)
    assert r.notes["stayed_float"][conv] == "excluded by quantize.nodes_to_exclude"
    assert r.metrics["float_nodes"] == 1


@pytest.mark.parametrize(
    ("target", "cfg", "needle"),
    [
        ("nvidia-cuda-fp16", {"mode": "static"}, "wants fp16, but quantize mode static makes int8"),
        ("cpu-x86-int8", {"mode": "fp16"}, "wants int8, but quantize mode fp16 makes fp16"),
        ("cpu-x86-fp32", {}, "nothing to quantize"),
    ],
)
def test_mode_target_mismatch_refused_before_work(target, cfg, needle):
    with pytest.raises(ModelpressError, match=needle):
        settings_for(QuantizeConfig(**cfg), parse_target(target))


def test_empty_calibration_set(onnx_dir, data, tmp_path):
    empty = data.with_split("train", x=data.x_train[:0], y=data.y_train[:0])
    with pytest.raises(ModelpressError, match="calibration set .* is empty"):
        quantize(onnx_dir, empty, tmp_path)
    assert not (tmp_path / "q" / "model.onnx").exists()


def test_wrong_shape_calibration_set(onnx_dir, data, tmp_path):
    flat = data.with_split("train", x=data.x_train.reshape(len(data.x_train), 64))
    with pytest.raises(ModelpressError, match=r"shape \(64,\), but the model's input 'input' takes \(1, 8, 8\)"):
        quantize(onnx_dir, flat, tmp_path)


def test_nan_calibration_set(onnx_dir, data, tmp_path):
    bad = data.x_train.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ModelpressError, match="NaN"):
        quantize(onnx_dir, data.with_split("train", x=bad), tmp_path)


def test_static_without_data(onnx_dir, tmp_path):
    with pytest.raises(ModelpressError, match="needs calibration data"):
        quantize(onnx_dir, None, tmp_path)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_nothing_quantizable_is_never_labelled_int8(tmp_path, data, mode):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["logits"], name="relu")], "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src = artifacts.save_onnx(tmp_path / "relu", model)
    with pytest.raises(ModelpressError, match=f"nothing in model.onnx was converted by {mode}"):
        get_technique("quantize").apply(src, data, QuantizeConfig(mode=mode, format="qdq"),
                                        parse_target("cpu-x86-int8"), tmp_path / "q")
    assert not (tmp_path / "q" / "model.onnx").exists()


def test_fusing_a_graph_without_transformer_blocks_is_refused_in_one_line(onnx_dir, data, tmp_path):
    with pytest.raises(ModelpressError, match="found nothing to fuse in model.onnx") as err:
        quantize(onnx_dir, data, tmp_path, fuse="bert")
    assert "\n" not in str(err.value) and not (tmp_path / "q" / "model.onnx").exists()
