"""Seeded supervised training with early stopping on the validation split."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from modelpress.core.config import FrozenConfig

if TYPE_CHECKING:
    import numpy as np
    import torch

    from modelpress.core.data import DatasetSplits


class TrainConfig(FrozenConfig):
    epochs: int = Field(default=40, ge=1, le=1000, description="Maximum number of epochs.")
    batch_size: int = Field(default=64, ge=1, le=65536, description="Mini-batch size.")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, description="Adam learning rate.")
    patience: int = Field(
        default=10, ge=1, le=1000, description="Stop after this many epochs without a better val."
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for init and shuffling.")


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    val_accuracy: float
    epochs_run: int


def accuracy(module: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    module.eval()
    with torch.no_grad():
        pred = module(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def train(
    module: torch.nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    progress: Callable[[str], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Train in place; the module ends with the weights of its best val epoch.

    `after_step` runs after every optimizer step (pruning uses it to keep pruned weights at zero).
    """
    import torch

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    opt = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()

    best = (-1.0, 0, copy.deepcopy(module.state_dict()))
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        module.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            opt.zero_grad()
            loss = loss_fn(module(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
        val = accuracy(module, data.x_val, data.y_val)
        if val > best[0]:
            best = (val, epoch, copy.deepcopy(module.state_dict()))
        say(f"  epoch {epoch:3d}/{config.epochs}  loss {loss.item():.4f}  val acc {val:.4f}")
        if epoch - best[1] >= config.patience:
            say(f"  early stop: no better val accuracy for {config.patience} epochs")
            break
    module.load_state_dict(best[2])
    module.eval()
    return TrainResult(best_epoch=best[1], val_accuracy=best[0], epochs_run=epoch)
