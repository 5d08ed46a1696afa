"""Quantization-aware fine-tuning: a pass-through when off, a same-architecture model when on."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpress.components.qat.qat import _weight_layers
from modelpress.components.quantize.settings import QuantizeConfig, settings_for
from modelpress.core import artifacts
from modelpress.core.data import load_dataset
from modelpress.core.hardware import parse_target
from modelpress.core.technique import get_technique
from modelpress.errors import ModelpressError
from modelpress.models.zoo import DigitsCNNSpec, build_model


@pytest.fixture(scope="module")
def data():
    return load_dataset("sklearn-digits")


@pytest.fixture()
def torch_dir(tmp_path: Path) -> Path:
    module = build_model(DigitsCNNSpec(), seed=0).eval()
    return artifacts.save_torch(tmp_path / "t", module, DigitsCNNSpec(),
                                artifacts.TensorSpec(shape=(1, 8, 8)), "sklearn-digits")


def test_off_is_a_copy(torch_dir, data, tmp_path):
    r = get_technique("qat").apply(torch_dir, data, QuantizeConfig(), parse_target("cpu-x86-int8"),
                                   tmp_path / "out")
    assert r.notes == {"qat": "off"}
    assert (tmp_path / "out" / "weights.npz").read_bytes() == (torch_dir / "weights.npz").read_bytes()


def test_on_keeps_architecture_and_reports(torch_dir, data, tmp_path):
    cfg = QuantizeConfig(qat={"epochs": 1})
    r = get_technique("qat").apply(torch_dir, data, cfg, parse_target("cpu-x86-int8"), tmp_path / "out")
    module, manifest = artifacts.load_torch(r.model_dir)  # loads with strict=True: no parametrization left
    assert manifest.architecture == DigitsCNNSpec()
    assert {"qat_val_accuracy_int8_weights_before", "qat_val_accuracy_int8_weights_after"} <= set(r.metrics)
    assert r.metrics["qat_val_accuracy_int8_weights_after"] >= r.metrics["qat_val_accuracy_int8_weights_before"]


def test_conv_layers_are_paired_with_their_batchnorm():
    import torch.nn as nn

    pairs = _weight_layers(build_model(DigitsCNNSpec()))
    assert [type(layer).__name__ for layer, _ in pairs] == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert [isinstance(b, nn.BatchNorm2d) for _, b in pairs] == [True, True, False, False]


def test_qat_needs_static_mode():
    with pytest.raises(ModelpressError, match="quantize.qat prepares weights for static INT8"):
        settings_for(QuantizeConfig(mode="dynamic", qat={}), parse_target("cpu-x86-int8"))


def test_qat_needs_a_torch_source(tmp_path, data):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["logits"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1, 8, 8])],
    )
    src = artifacts.save_onnx(tmp_path / "o", helper.make_model(graph))
    with pytest.raises(ModelpressError, match="quantize.qat trains torch weights, but the model is onnx") as exc:
        get_technique("qat").apply(src, data, QuantizeConfig(qat={}), parse_target("cpu-x86-int8"),
                                   tmp_path / "out")
    assert "mlflow.pytorch.log_model" in exc.value.fix  # somewhere to go, not "register it as ONNX"


def test_chain_records_qat_only_when_on():
    from modelpress.pipelines.recipe import Recipe

    assert Recipe().chain() == ["export_onnx", "quantize"]
    assert Recipe(quantize={"qat": {"epochs": 2}}).chain() == ["qat", "export_onnx", "quantize"]
