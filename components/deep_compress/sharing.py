"""Stage 2: weight sharing. Each pruned layer's nonzero weights become indices into a small
codebook; the codebook (not the weights) is then fine-tuned.

While fine-tuning, a layer's weight is computed as scatter(codebook[index]) at the kept
positions, so autograd hands each centroid the sum of its weights' gradients, which is
the centroid update of Han et al. (2016). Pruned positions stay exactly zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelpress.components.deep_compress.kmeans import kmeans_1d

if TYPE_CHECKING:
    import torch


@dataclass
class SharedLayer:
    name: str
    codebook: torch.nn.Parameter
    positions: torch.Tensor  # flat positions of the kept weights
    indices: torch.Tensor  # codebook index of each kept weight
    shape: tuple[int, ...]


def share(module: torch.nn.Module, bits: dict[str, int], iterations: int) -> list[SharedLayer]:
    """k-means per layer (`bits` maps layer name -> index bits) and parametrize each weight."""
    import numpy as np
    import torch
    from torch.nn.utils import parametrize

    mods = dict(module.named_modules())
    shared = []
    for name, b in bits.items():
        layer = mods[name]
        w = layer.weight.detach().cpu().numpy().ravel()
        positions = np.flatnonzero(w)
        book, idx = kmeans_1d(w[positions], b, iterations)
        sl = SharedLayer(
            name=name,
            codebook=torch.nn.Parameter(torch.from_numpy(book.copy())),
            positions=torch.from_numpy(positions),
            indices=torch.from_numpy(idx.astype(np.int64)),
            shape=tuple(layer.weight.shape),
        )
        parametrize.register_parametrization(layer, "weight", _SharedWeight(sl))
        layer.parametrizations.weight.original.requires_grad_(False)  # only centroids and biases train
        shared.append(sl)
    return shared


def _SharedWeight(sl: SharedLayer) -> torch.nn.Module:  # noqa: N802 - a module factory
    import torch

    class SharedWeight(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.codebook = sl.codebook  # registered here, so the optimizer sees it
            self.size = math.prod(sl.shape)

        def forward(self, _original: torch.Tensor) -> torch.Tensor:
            flat = torch.zeros(self.size, dtype=self.codebook.dtype)
            return flat.scatter(0, sl.positions, self.codebook[sl.indices]).view(sl.shape)

    return SharedWeight()


def freeze(module: torch.nn.Module, shared: list[SharedLayer], half: bool) -> None:
    """Write the shared values into plain weights (codebooks rounded to float16 when `half`)."""
    import torch
    from torch.nn.utils import parametrize

    mods = dict(module.named_modules())
    with torch.no_grad():
        for sl in shared:
            if half:
                sl.codebook.copy_(sl.codebook.half().float())
            parametrize.remove_parametrizations(mods[sl.name], "weight", leave_parametrized=True)
