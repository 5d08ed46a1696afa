"""Seeded supervised training with early stopping on the validation split."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

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
    select: Literal["accuracy", "accuracy_then_loss"] = Field(
        default="accuracy",
        description="How the kept epoch is picked: best val accuracy (the first to reach it), or "
        "best val accuracy with ties broken by lower val loss (small val splits tie often).",
    )


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    val_accuracy: float
    epochs_run: int
    # One entry per epoch: epoch, train_loss (last batch), val_accuracy, val_loss.
    history: tuple[dict[str, float], ...] = ()


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
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> TrainResult:
    """Train in place; the module ends with the weights of its best val epoch.

    `after_step` runs after every optimizer step (pruning uses it to keep pruned weights at zero).
    `loss(logits, x, y)` replaces cross-entropy (distillation passes a teacher-matching loss).
    """
    import torch

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    opt = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    ce = torch.nn.CrossEntropyLoss()
    loss_fn = loss or (lambda logits, _x, labels: ce(logits, labels))

    best: tuple = ((-1.0, float("-inf")), 0, copy.deepcopy(module.state_dict()))
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        module.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            opt.zero_grad()
            batch_loss = loss_fn(module(x[idx]), x[idx], y[idx])
            batch_loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
        val = accuracy(module, data.x_val, data.y_val)
        val_loss = _val_loss(module, data)
        history.append({"epoch": epoch, "train_loss": float(batch_loss.item()), "val_accuracy": val,
                        "val_loss": val_loss})
        score = (val, -val_loss) if config.select == "accuracy_then_loss" else (val,)
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(module.state_dict()))
        say(f"  epoch {epoch:3d}/{config.epochs}  loss {batch_loss.item():.4f}  val acc {val:.4f}")
        if epoch - best[1] >= config.patience:
            say(f"  early stop: no better val accuracy for {config.patience} epochs")
            break
    module.load_state_dict(best[2])
    module.eval()
    return TrainResult(best_epoch=best[1], val_accuracy=best[0][0], epochs_run=epoch, history=tuple(history))


def _val_loss(module: torch.nn.Module, data: DatasetSplits) -> float:
    import torch

    with torch.no_grad():
        logits = module(torch.from_numpy(data.x_val))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.y_val)))


def distillation_loss(
    teacher: Callable[[torch.Tensor], torch.Tensor], temperature: float, alpha: float
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Hinton et al. (2015): alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels).

    `teacher` maps a batch to logits (an eval-mode module, or an ONNX Runtime session wrapper).
    """
    import torch
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft = F.softmax(teacher(x) / temperature, dim=1)
        kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean")
        return alpha * temperature**2 * kd + (1 - alpha) * F.cross_entropy(logits, y)

    return loss
