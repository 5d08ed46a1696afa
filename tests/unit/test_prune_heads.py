"""Attention-head pruning on a tiny BERT built from a config (no weights downloaded)."""

from __future__ import annotations

import pytest
import torch

from modelpress.components.prune.heads import choose_heads, find_blocks, head_importance, remove_heads
from modelpress.errors import ModelpressError
from modelpress.models.zoo import MLPSpec, build_model


@pytest.fixture()
def bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=16)
    return BertModel(cfg).eval()


def test_heads_are_removed_and_the_model_still_runs(bert):
    ids = torch.randint(0, 50, (3, 10))
    blocks = find_blocks(bert)
    assert [b.num_heads for b in blocks] == [4, 4] and blocks[0].head_size == 8
    before = sum(p.numel() for p in bert.parameters())
    remove_heads(blocks, {0: [1, 3], 1: [0]})
    assert [b.num_heads for b in blocks] == [2, 3]
    assert blocks[0].attention.query.out_features == 16 and blocks[0].out.in_features == 16
    assert bert(input_ids=ids).last_hidden_state.shape == (3, 10, 32)
    assert sum(p.numel() for p in bert.parameters()) < before


def test_importance_and_choice_keep_a_head_per_block(bert):
    ids = torch.randint(0, 50, (4, 10))
    ref = bert(input_ids=ids).last_hidden_state.detach()
    blocks = find_blocks(bert)

    def score() -> float:
        with torch.no_grad():
            return -float((bert(input_ids=ids).last_hidden_state - ref).pow(2).mean())

    imp = head_importance(blocks, score, lambda s: None)
    assert len(imp) == 8 and all(v >= 0 for v in imp.values())
    assert torch.equal(bert(input_ids=ids).last_hidden_state, ref)  # masks were undone
    chosen = choose_heads(imp, blocks, 0.75)
    assert sum(len(v) for v in chosen.values()) == 6 and all(len(v) == 3 for v in chosen.values())
    with pytest.raises(ModelpressError, match="head ratio 1.0 is outside"):
        choose_heads(imp, blocks, 1.0)


def test_model_without_attention_is_refused():
    with pytest.raises(ModelpressError, match="no BERT-style attention block"):
        find_blocks(build_model(MLPSpec()))
