"""Architectures we can rebuild from a spec.

A model between pipeline steps is `ArchSpec` (JSON) plus its weights, so
loading one never executes code from the registry: the spec only selects a
class defined here and passes it typed, bounded numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from modelpress.core.config import FrozenConfig

if TYPE_CHECKING:
    import torch


Activation = Literal["relu", "hardswish", "gelu", "silu"]
Head = Literal["flatten", "pool"]


class DigitsCNNSpec(FrozenConfig):
    family: Literal["digits-cnn"] = "digits-cnn"
    channels: tuple[Annotated[int, Field(ge=1, le=1024)], ...] = Field(
        default=(16, 32), min_length=1, max_length=3, description="Output channels per conv block."
    )
    hidden: int = Field(default=64, ge=1, le=4096, description="Width of the hidden linear layer.")
    kernel_size: Literal[3, 5] = Field(
        default=3, description="Conv kernel side (padding keeps the 8x8 grid); 5 is LeNet-5's."
    )
    kernels: tuple[Literal[3, 5], ...] | None = Field(
        default=None, max_length=3, description="Kernel side per conv block; None: `kernel_size` for every block."
    )
    activation: Activation = Field(default="relu", description="Activation after each conv and the hidden layer.")
    residual: bool = Field(
        default=False, description="Each block adds a second conv whose input skips over it (x + conv(x))."
    )
    head: Head = Field(
        default="flatten", description="How conv features reach the dense layer: every grid position (flatten), "
        "or each channel's mean over the grid (pool: global average pooling, fewer dense weights)."
    )
    num_classes: int = Field(default=10, ge=2, le=1000, description="Number of output classes.")
    batchnorm: bool = Field(
        default=True, description="BatchNorm after each conv; False once folded into the conv (deep compression)."
    )

    @model_validator(mode="after")
    def _kernels(self) -> DigitsCNNSpec:
        if self.kernels is not None and len(self.kernels) != len(self.channels):
            raise ValueError(f"kernels {list(self.kernels)} must give one side per conv block "
                             f"({len(self.channels)})")
        return self

    def kernel(self, block: int) -> int:
        return self.kernels[block] if self.kernels is not None else self.kernel_size


class MLPSpec(FrozenConfig):
    family: Literal["mlp"] = "mlp"
    in_features: int = Field(default=64, ge=1, le=1_000_000, description="Flattened input size.")
    hidden: tuple[Annotated[int, Field(ge=1, le=65536)], ...] = Field(
        default=(300, 100), max_length=8, description="Hidden layer widths."
    )
    num_classes: int = Field(default=10, ge=2, le=1000, description="Number of output classes.")
    activation: Activation = Field(default="relu", description="Activation after each hidden layer.")


ArchSpec = Annotated[DigitsCNNSpec | MLPSpec, Field(discriminator="family")]

# Named digits architectures; the last two mirror the LeNets of Han et al. (2016) on 8x8 inputs.
PRESETS: dict[str, DigitsCNNSpec | MLPSpec] = {
    "digits-cnn": DigitsCNNSpec(),
    "lenet5": DigitsCNNSpec(channels=(20, 50), hidden=500, kernel_size=5, batchnorm=False),
    "mlp-300-100": MLPSpec(),
}


def _activation(name: str) -> torch.nn.Module:
    from torch import nn

    return {"relu": nn.ReLU, "hardswish": nn.Hardswish, "gelu": nn.GELU, "silu": nn.SiLU}[name]()


def _conv_unit(c_in: int, c_out: int, k: int, spec: DigitsCNNSpec) -> list[torch.nn.Module]:
    from torch import nn

    norm = [nn.BatchNorm2d(c_out)] if spec.batchnorm else []
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2), *norm, _activation(spec.activation)]


def build_model(spec: DigitsCNNSpec | MLPSpec, seed: int | None = None) -> torch.nn.Module:
    """Build the module; with `seed`, its initial weights are reproducible."""
    import torch
    import torch.nn as nn

    from modelpress.models.blocks import Residual

    if seed is not None:
        torch.manual_seed(seed)

    if isinstance(spec, DigitsCNNSpec):
        layers: list[nn.Module] = []
        c_in, side = 1, 8
        for i, c_out in enumerate(spec.channels):
            k = spec.kernel(i)
            layers += _conv_unit(c_in, c_out, k, spec)
            if spec.residual:
                layers.append(Residual(nn.Sequential(*_conv_unit(c_out, c_out, k, spec))))
            if i < 2:  # 8x8 -> 4x4 -> 2x2; a third block keeps 2x2
                layers.append(nn.MaxPool2d(2))
                side //= 2
            c_in = c_out
        if spec.head == "pool":
            layers.append(nn.AdaptiveAvgPool2d(1))
            side = 1
        layers += [
            nn.Flatten(),
            nn.Linear(c_in * side * side, spec.hidden),
            _activation(spec.activation),
            nn.Linear(spec.hidden, spec.num_classes),
        ]
        return nn.Sequential(*layers)
    if isinstance(spec, MLPSpec):
        layers = [nn.Flatten()]
        width = spec.in_features
        for h in spec.hidden:
            layers += [nn.Linear(width, h), _activation(spec.activation)]
            width = h
        layers.append(nn.Linear(width, spec.num_classes))
        return nn.Sequential(*layers)
    raise TypeError(f"no builder for {type(spec).__name__}")


def fold_batchnorm(spec: DigitsCNNSpec, module: torch.nn.Module) -> tuple[DigitsCNNSpec, torch.nn.Module]:
    """The same function without BatchNorm: each BN's scale and shift folded into the conv before it."""
    import torch
    from torch import nn

    folded_spec = spec.model_copy(update={"batchnorm": False})
    folded = build_model(folded_spec)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for conv, bn, target in zip(convs, norms, [m for m in folded.modules() if isinstance(m, nn.Conv2d)]):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            target.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            target.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
        src_lin = [m for m in module.modules() if isinstance(m, nn.Linear)]
        for s_lin, t_lin in zip(src_lin, [m for m in folded.modules() if isinstance(m, nn.Linear)]):
            t_lin.load_state_dict(s_lin.state_dict())
    return folded_spec, folded.eval()


def spec_of(spec: DigitsCNNSpec | MLPSpec, module: torch.nn.Module) -> DigitsCNNSpec | MLPSpec:
    """The spec of `module`, a (possibly channel-pruned) model built from `spec`.

    Structured pruning changes widths only, so the family stays and the widths are read back.
    """
    import torch.nn as nn

    convs = [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]
    linears = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
    if isinstance(spec, DigitsCNNSpec):
        if spec.residual:  # each block: its conv, then the residual conv (same width)
            convs = convs[::2]
        widths = {"channels": tuple(convs), "hidden": linears[0],
                  "batchnorm": any(isinstance(m, nn.BatchNorm2d) for m in module.modules())}
    else:
        widths = {"hidden": tuple(linears[:-1])}
    return type(spec).model_validate({**spec.model_dump(), **widths})
