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
from typing import TYPE_CHECKING, Any

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


def prune_encoder(
    module: torch.nn.Module, inputs: dict[str, Any], ratio: float, say: Callable[[str], None], rows: int = 32,
) -> tuple[dict[int, list[int]], dict[str, float]]:
    """Remove `ratio` of the heads of an `models.hf` encoder, ranked on `rows` samples of `inputs`
    (token ids and mask) by how much masking each alone lowers the cosine similarity of the
    mean-pooled embeddings to the unpruned ones. Returns (heads removed by layer, metrics)."""
    import torch

    feed = {k: torch.from_numpy(v[:rows]) for k, v in inputs.items()}
    mask = feed["attention_mask"][..., None].float()

    def embed() -> torch.Tensor:
        with torch.no_grad():
            h = module(feed["input_ids"], feed["attention_mask"])
        return torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)

    reference = embed()
    blocks = find_blocks(module.model)
    before = sum(b.num_heads for b in blocks)
    params_before = sum(p.numel() for p in module.parameters())
    importance = head_importance(blocks, lambda: float((embed() * reference).sum(1).mean()), say)
    chosen = choose_heads(importance, blocks, ratio)
    remove_heads(blocks, chosen)
    after = sum(b.num_heads for b in blocks)
    params = sum(p.numel() for p in module.parameters())
    cosine = float((embed() * reference).sum(1).mean())
    say(f"heads: {before} -> {after} ({', '.join(f'{blocks[b].name}: -{len(h)}' for b, h in chosen.items())}); "
        f"val cosine to the unpruned embeddings {cosine:.4f}")
    return chosen, {"heads_before": float(before), "heads": float(after), "heads_ratio": after / before,
                    "params_before": float(params_before), "params": float(params),
                    "params_ratio": params / params_before, "val_cosine": cosine}


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
