"""Unstructured magnitude pruning: zero the smallest weights, globally or per layer.

The zeros stay zeros through fine-tuning because `Masks.apply` runs after every
optimizer step. They pay off on disk: `artifacts.save_torch` stores a tensor that
is mostly zeros as its nonzero values plus a bitmask (see `core/artifacts.py`).
Dense runtimes (ONNX Runtime on CPU) do not run faster on them; structured
pruning is the one for latency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class Masks:
    """One boolean keep-mask per pruned layer's weight."""

    def __init__(self, module: torch.nn.Module, layers: list[str]) -> None:
        mods = dict(module.named_modules())
        self.weights = {n: mods[n].weight for n in layers}
        self.keep = {n: w.detach() != 0 for n, w in self.weights.items()}

    def apply(self) -> None:
        import torch

        with torch.no_grad():
            for n, w in self.weights.items():
                w.mul_(self.keep[n])

    def update(self, ratios: dict[str, float], global_ratio: float | None) -> None:
        """Re-mask by magnitude: `ratios` per named layer, one global threshold for the rest."""
        import torch

        with torch.no_grad():
            for n, r in ratios.items():
                self.keep[n] = _top_mask(self.weights[n].detach().abs(), r)
            rest = [n for n in self.weights if n not in ratios]
            if rest and global_ratio is not None and global_ratio > 0:
                mags = torch.cat([self.weights[n].detach().abs().flatten() for n in rest])
                k = int(global_ratio * mags.numel())
                if k > 0:
                    threshold = mags.kthvalue(k).values
                    for n in rest:
                        w = self.weights[n].detach().abs()
                        self.keep[n] = w > threshold
        self.apply()


def _top_mask(mag: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep the largest (1 - ratio) of `mag`; exactly floor(ratio * n) entries are dropped."""
    import torch

    k = int(ratio * mag.numel())
    keep = torch.ones_like(mag, dtype=torch.bool)
    if k > 0:
        drop = mag.flatten().argsort()[:k]
        keep.view(-1)[drop] = False
    return keep
