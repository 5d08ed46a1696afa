"""Transformer fusion before quantization, on a tiny BERT exported as a user would (torch, eager attention)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from modelpress.components.quantize.ort_quantize import attention_shape
from modelpress.components.quantize.settings import QuantizeConfig
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits, Split
from modelpress.core.hardware import parse_target
from modelpress.core.technique import get_technique


def _export_bert(tmp, attention: str):
    """A 2-layer, 4-head, 32-wide BERT (random weights) as an ONNX folder with two int64 inputs."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, attn_implementation=attention)
    bert = BertModel(config, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids, mask = torch.ones(2, 16, dtype=torch.int64), torch.ones(2, 16, dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder(), (ids, mask), str(tmp / "bert.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes})
    return artifacts.save_onnx(tmp / "onnx", tmp / "bert.onnx")


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory):
    """Eager attention: ONNX Runtime's own optimizer fuses it."""
    return _export_bert(tmp_path_factory.mktemp("bert"), "eager")


@pytest.fixture(scope="module")
def sdpa_bert_onnx(tmp_path_factory):
    """transformers' default SDPA attention, exported as torch writes it (split scale, Where mask, NaN guard)."""
    return _export_bert(tmp_path_factory.mktemp("bert-sdpa"), "sdpa")


def test_sdpa_attention_is_fused_into_one_op_per_layer_with_the_same_outputs(sdpa_bert_onnx):
    import onnx
    import onnxruntime as ort

    from modelpress.components.quantize.attention_fusion import fuse_attention

    path = artifacts.onnx_file(sdpa_bert_onnx)
    model = onnx.load(str(path))
    assert fuse_attention(model, num_heads=4) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Attention") == 2 and "Softmax" not in ops and "IsNaN" not in ops
    onnx.checker.check_model(model)
    ids = np.random.default_rng(1).integers(1, 50, size=(3, 16)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, 9:] = 0  # padding: masked keys
    feed = {"input_ids": ids, "attention_mask": mask}
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(before - after).max() < 1e-4


def test_sdpa_bert_fused_then_dynamic_int8_has_quantized_attention(sdpa_bert_onnx, tmp_path):
    result = get_technique("quantize").apply(sdpa_bert_onnx, None, QuantizeConfig(mode="dynamic", fuse="bert"),
                                             parse_target("cpu-x86-int8"), tmp_path / "q")
    assert result.notes["fused"]["Attention"] == 2 and result.notes["quantized_by_op"]["QAttention"] == 2


def test_a_graph_without_that_attention_is_left_alone(bert_onnx):
    import onnx

    from modelpress.components.quantize.attention_fusion import fuse_attention

    model = onnx.load(str(artifacts.onnx_file(bert_onnx)))  # eager: an additive float mask, no Where
    before = model.SerializeToString()
    assert fuse_attention(model, num_heads=4) == 0 and model.SerializeToString() == before


def test_heads_and_width_are_read_from_the_exported_graph(bert_onnx):
    assert attention_shape(artifacts.onnx_file(bert_onnx)) == (4, 32)


def test_fused_then_quantized_bert_runs_on_the_cpu_provider_and_stays_close(bert_onnx, tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, size=(8, 16)).astype(np.int64)
    mask = np.ones_like(ids)
    data = DatasetSplits("tokens", 0, train=Split({"input_ids": ids, "attention_mask": mask}, None),
                         val=Split({"input_ids": ids, "attention_mask": mask}, None),
                         test=Split({"input_ids": ids, "attention_mask": mask}, None))
    result = get_technique("quantize").apply(bert_onnx, data, QuantizeConfig(mode="dynamic", fuse="bert"),
                                             parse_target("cpu-x86-int8"), tmp_path / "q")
    assert result.notes["fused"]["Attention"] == 2 and "4 heads of 8" in result.notes["preprocess"]
    assert result.notes["settings"]["fuse"] == "bert" and result.metrics["quantized_nodes"] > 0

    def run(path):
        sess = ort.InferenceSession(str(artifacts.onnx_file(path)), providers=["CPUExecutionProvider"])
        return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    fp32, int8 = run(bert_onnx), run(result.model_dir)
    cos = (fp32 * int8).sum(-1) / np.linalg.norm(fp32, axis=-1) / np.linalg.norm(int8, axis=-1)
    assert int8.shape == fp32.shape and cos.mean() > 0.95
