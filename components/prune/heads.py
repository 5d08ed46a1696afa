"""Attention-head pruning for BERT-style transformer blocks, with heads really removed.

A block is recognised by its shape, not its class: an attention module with `query`,
`key` and `value` Linear layers (and `attention_head_size`) whose sibling output
module has a `dense` Linear. Removing head h cuts rows [h*d, (h+1)*d) of query, key
and value and the same input columns of `output.dense`; nothing else depends on
them, so the block stays consistent and the model gets smaller and faster.

Head importance is measured by ablation: mask one head (zero its columns in
`output.dense`), run calibration inputs, and see how much a score the caller
chooses (for a sentence encoder: cosine similarity to the unpruned embeddings)
drops. transformers 5 removed its own `prune_heads`, so this does it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch


@dataclass
class AttentionBlock:
    name: str
    attention: torch.nn.Module  # has query, key, value
    out: torch.nn.Linear  # consumes the concatenated heads
    head_size: int

    @property
    def num_heads(self) -> int:
        return self.attention.query.out_features // self.head_size


def find_blocks(model: torch.nn.Module) -> list[AttentionBlock]:
    from torch import nn

    blocks = []
    for name, mod in model.named_modules():
        att, out = getattr(mod, "self", None), getattr(getattr(mod, "output", None), "dense", None)
        if att is None or not isinstance(out, nn.Linear):
            continue
        if all(isinstance(getattr(att, k, None), nn.Linear) for k in ("query", "key", "value")) and hasattr(
            att, "attention_head_size"
        ):
            blocks.append(AttentionBlock(name, att, out, int(att.attention_head_size)))
    if not blocks:
        raise ModelpressError(
            f"{type(model).__name__} has no BERT-style attention block (query/key/value + output.dense)",
            "head pruning supports BERT-family encoders; use channel pruning for other models",
        )
    return blocks


def _cols(block: AttentionBlock, heads: list[int]) -> torch.Tensor:
    import torch

    d = block.head_size
    return torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]) if heads else torch.zeros(0, dtype=torch.long)


def head_importance(
    blocks: list[AttentionBlock], score: Callable[[], float], say: Callable[[str], None]
) -> dict[tuple[int, int], float]:
    """Score lost when each head alone is masked; higher means the head matters more."""
    import torch

    base = score()
    out: dict[tuple[int, int], float] = {}
    with torch.no_grad():
        for b, block in enumerate(blocks):
            w = block.out.weight
            for h in range(block.num_heads):
                cols = _cols(block, [h])
                saved = w[:, cols].clone()
                w[:, cols] = 0
                out[(b, h)] = base - score()
                w[:, cols] = saved
            say(f"head importance {block.name}: " + ", ".join(
                f"{out[(b, h)]:.4f}" for h in range(block.num_heads)))
    return out


def choose_heads(
    importance: dict[tuple[int, int], float], blocks: list[AttentionBlock], ratio: float
) -> dict[int, list[int]]:
    """The least important `ratio` of all heads, keeping at least one head in every block."""
    if not 0.0 <= ratio < 1.0:
        raise ModelpressError(f"head ratio {ratio} is outside [0, 1)", "pass a ratio such as 0.25")
    total = sum(b.num_heads for b in blocks)
    left = {i: b.num_heads for i, b in enumerate(blocks)}
    chosen: dict[int, list[int]] = {}
    for (b, h), _ in sorted(importance.items(), key=lambda kv: kv[1]):
        if sum(len(v) for v in chosen.values()) >= int(ratio * total):
            break
        if left[b] > 1:
            chosen.setdefault(b, []).append(h)
            left[b] -= 1
    return {b: sorted(hs) for b, hs in chosen.items()}


def remove_heads(blocks: list[AttentionBlock], heads: dict[int, list[int]]) -> None:
    """Cut the given heads out of each block, in place."""
    from torch import nn

    def keep_rows(layer: nn.Linear, idx: torch.Tensor) -> None:
        layer.weight = nn.Parameter(layer.weight.detach().index_select(0, idx).clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.detach().index_select(0, idx).clone())
        layer.out_features = len(idx)

    for b, drop in heads.items():
        block = blocks[b]
        kept = [h for h in range(block.num_heads) if h not in set(drop)]
        idx = _cols(block, kept)
        for name in ("query", "key", "value"):
            keep_rows(getattr(block.attention, name), idx)
        block.out.weight = nn.Parameter(block.out.weight.detach().index_select(1, idx).clone())
        block.out.in_features = len(idx)
        block.attention.num_attention_heads = len(kept)
        block.attention.all_head_size = len(idx)
