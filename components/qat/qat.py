"""Quantization-aware fine-tuning (QAT) of a torch model before static INT8.

What is simulated: per-output-channel symmetric INT8 rounding of each Conv and
Linear weight *as ONNX Runtime will see it*, i.e. with a following BatchNorm
folded in (the ONNX export folds it). Gradients pass straight through the
rounding. Activation quantization is not simulated: ONNX Runtime calibrates
activation ranges afterwards, as in post-training quantization. BatchNorm
statistics are frozen, so the folding stays valid while the weights move.

The result is a plain float model of the same architecture, whose weights
sit where INT8 rounding hurts least; the static quantize step then runs as usual.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.quantize.settings import QuantizeConfig, settings_for
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits
from modelpress.core.hardware import HardwareTarget
from modelpress.core.progress import say
from modelpress.core.technique import Result, Technique, require_torch
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch

    from modelpress.components.quantize.settings import QATConfig


def _weight_layers(module: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module | None]]:
    """(Conv or Linear, the BatchNorm right after it or None), in module order."""
    import torch.nn as nn

    mods = [m for m in module.modules() if not list(m.children())]
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            out.append((m, nxt if isinstance(nxt, nn.BatchNorm2d) else None))
    return out


def _fake_quant(bn: torch.nn.Module | None, qmax: int) -> torch.nn.Module:
    import torch

    class FoldedWeightFakeQuant(torch.nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            shape = (-1,) + (1,) * (w.dim() - 1)
            if bn is None:
                k = torch.ones(w.shape[0], device=w.device)
            else:
                k = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
                k = torch.where(k.abs() < 1e-12, torch.full_like(k, 1e-12), k)
            folded = w * k.view(shape)
            scale = folded.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / qmax
            zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
            q = torch.fake_quantize_per_channel_affine(folded, scale, zero, 0, -qmax, qmax)
            return q / k.view(shape)

    return FoldedWeightFakeQuant()


def finetune(
    module: torch.nn.Module,
    data: DatasetSplits,
    qat: QATConfig,
    reduce_range: bool,
    say: Callable[[str], None],
) -> dict[str, float]:
    import torch
    import torch.nn as nn
    from torch.nn.utils import parametrize

    from modelpress.models.train import accuracy

    qmax = 63 if reduce_range else 127  # reduce_range: 7-bit weights
    layers = _weight_layers(module)
    if not layers:
        raise ModelpressError(
            "QAT found no Conv2d or Linear layer to prepare", "drop quantize.qat for this model"
        )
    before = accuracy(module, data.x_val, data.y_val)
    for layer, bn in layers:
        parametrize.register_parametrization(layer, "weight", _fake_quant(bn, qmax))
    simulated = accuracy(module, data.x_val, data.y_val)

    torch.manual_seed(qat.seed)
    gen = torch.Generator().manual_seed(qat.seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.Adam(module.parameters(), lr=qat.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    best = (simulated, 0, copy.deepcopy(module.state_dict()))
    for epoch in range(1, qat.epochs + 1):
        module.train()
        for m in module.modules():  # frozen statistics keep the BN folding valid
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), qat.batch_size):
            idx = order[start : start + qat.batch_size]
            opt.zero_grad()
            loss_fn(module(x[idx]), y[idx]).backward()
            opt.step()
        val = accuracy(module, data.x_val, data.y_val)
        say(f"qat epoch {epoch}/{qat.epochs}: val accuracy with INT8 weights {val:.4f}")
        if val > best[0]:
            best = (val, epoch, copy.deepcopy(module.state_dict()))
    module.load_state_dict(best[2])
    for layer, _ in layers:
        # Keep the latent float weights; ONNX Runtime applies the real rounding.
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    module.eval()
    return {
        "qat_val_accuracy_float_before": before,
        "qat_val_accuracy_int8_weights_before": simulated,
        "qat_val_accuracy_int8_weights_after": best[0],
        "qat_best_epoch": float(best[1]),
    }


class QAT(Technique):
    """Fine-tunes a torch model for static INT8; a no-op copy when the recipe has no `quantize.qat`.

    Its config is the recipe's quantize section: QAT prepares weights for exactly those settings.
    """

    name = "qat"
    Config = QuantizeConfig
    description = "Quantization-aware fine-tuning; configured by quantize.qat."
    input_format = "torch"
    per_target = True  # it fine-tunes for each target's quantization settings
    component = "modelpress.components.qat.component:qat"

    def config_of(self, recipe: Any) -> QuantizeConfig | None:  # type: ignore[override]
        return recipe.quantize if recipe.quantize.qat is not None else None

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: QuantizeConfig,  # type: ignore[override]
        target: HardwareTarget,
        out_dir: Path,
    ) -> Result:
        import shutil

        qconfig = config
        if qconfig.qat is None:
            shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
            return Result(model_dir=out_dir, notes={"qat": "off"})
        settings = settings_for(qconfig, target)
        require_torch(model_dir, "quantize.qat")
        if data is None or len(data.x_train) == 0:
            raise ModelpressError("quantize.qat needs training data, and the dataset is empty")
        module, manifest = artifacts.load_torch(model_dir)
        metrics = finetune(module, data, qconfig.qat, settings.reduce_range, say=say)
        artifacts.save_like(out_dir, module, manifest)
        return Result(model_dir=out_dir, metrics=metrics, notes={"qat": qconfig.qat.model_dump()})
