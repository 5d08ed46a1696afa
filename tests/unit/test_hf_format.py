"""Transformers encoders between steps: config + safetensors, heads removed and replayed on load."""

from __future__ import annotations

import json

import pytest
import torch

from modelpress.core import artifacts
from modelpress.errors import ModelpressError


@pytest.fixture()
def tiny_bert(tmp_path):
    """A 2-layer, 4-head BERT saved as save_pretrained writes it (random weights: no download)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    model = BertModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", model


def _fetched(src, out):
    """What registry.transformers_source writes for an mlflow.transformers model."""
    from modelpress.registry.transformers_source import fetch_transformers

    local = src.parent / "download"
    (local / "model").mkdir(parents=True)
    for f in src.iterdir():
        (local / "model" / f.name).write_bytes(f.read_bytes())
    return fetch_transformers(local, {"flavors": {"transformers": {"model_binary": "model"}}}, out, "tiny", None)


def test_fetch_load_prune_heads_save_and_load_again(tiny_bert, tmp_path):
    from modelpress.components.prune.heads import prune_encoder

    src, model = tiny_bert
    manifest = _fetched(src, tmp_path / "f")
    assert manifest.format == "transformers"
    assert [i.name for i in manifest.inputs] == ["input_ids", "attention_mask"]
    assert manifest.outputs[0].shape == ("sequence", 32)
    assert json.loads((tmp_path / "f" / artifacts.NOTES_FILE).read_text())["source"]["unpickled"] is False
    enc, _ = artifacts.load_torch(tmp_path / "f")
    ids = torch.randint(0, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(enc(ids, mask), model(input_ids=ids, attention_mask=mask).last_hidden_state, atol=1e-5)
    inputs = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    chosen, metrics = prune_encoder(enc, inputs, 0.5, lambda s: None)
    assert metrics["heads"] == 4 and metrics["heads_before"] == 8 and metrics["params_ratio"] < 1
    with torch.no_grad():
        pruned_out = enc(ids, mask)
    artifacts.save_like(tmp_path / "p", enc, manifest.model_copy(
        update={"heads_removed": {k: tuple(v) for k, v in chosen.items()}}))
    again, m2 = artifacts.load_torch(tmp_path / "p")
    assert m2.heads_removed == {k: tuple(v) for k, v in chosen.items()}
    with torch.no_grad():
        assert torch.allclose(again(ids, mask), pruned_out, atol=1e-5)


def test_remote_code_and_pickled_weights_are_refused(tiny_bert, tmp_path):
    from modelpress.models import hf

    src, _ = tiny_bert
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    with pytest.raises(ModelpressError, match="custom code"):
        hf.check_config(src, "tiny")
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    with pytest.raises(ModelpressError, match="no single model.safetensors") as exc:
        _fetched(src, tmp_path / "f")
    assert "safetensors" in exc.value.fix


def test_a_sentence_transformers_folder_reads_the_same(tiny_bert, tmp_path):
    """mlflow.sentence_transformers keeps the encoder's config and safetensors at its folder's root."""
    from modelpress.registry.transformers_source import fetch_transformers

    src, model = tiny_bert
    local = tmp_path / "download"
    (local / "model.sentence_transformer").mkdir(parents=True)
    for f in src.iterdir():
        (local / "model.sentence_transformer" / f.name).write_bytes(f.read_bytes())
    mlmodel = {"flavors": {"sentence_transformers": {}, "python_function": {"data": "model.sentence_transformer"}}}
    manifest = fetch_transformers(local, mlmodel, tmp_path / "f", "tiny", None)
    note = json.loads((tmp_path / "f" / artifacts.NOTES_FILE).read_text())["source"]
    assert manifest.format == "transformers" and note["format"].startswith("mlflow.sentence_transformers BertModel")
    enc, _ = artifacts.load_torch(tmp_path / "f")
    ids, mask = torch.randint(0, 50, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(enc(ids, mask), model(input_ids=ids, attention_mask=mask).last_hidden_state, atol=1e-5)
