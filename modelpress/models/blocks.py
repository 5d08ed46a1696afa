"""Building blocks of the catalog architectures that torch does not ship (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """x + body(x): a skip connection around `body` (whose output has x's shape)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
