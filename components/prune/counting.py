"""Counting what pruning removes: parameters, nonzeros, MACs, per-layer sparsity, torch latency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def weight_layers(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Conv2d, Linear and Embedding layers by module name: whose weights unstructured pruning and
    weight sharing work on (structured pruning removes Conv2d channels and Linear features only)."""
    import torch.nn as nn

    return {n: m for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))}


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_nonzero(module: torch.nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in module.parameters())


def layer_sparsity(module: torch.nn.Module) -> dict[str, float]:
    """Measured fraction of zero weights per Conv2d/Linear layer (weights only, not biases)."""
    return {n: float((m.weight == 0).float().mean()) for n, m in weight_layers(module).items()}


def count_macs(module: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv2d and Linear layer, dense (zeros counted)."""
    import torch
    import torch.nn as nn

    macs: dict[str, int] = {}
    hooks = []
    for name, layer in weight_layers(module).items():
        if isinstance(layer, nn.Embedding):  # a lookup, no multiply-accumulates
            continue

        def hook(m: nn.Module, inputs: tuple, out: torch.Tensor, name: str = name) -> None:
            per_out = m.weight[0].numel()  # in_channels/groups * kh * kw, or in_features
            macs[name] = macs.get(name, 0) + out[0].numel() * per_out

        hooks.append(layer.register_forward_hook(hook))
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros((1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return macs


def nonzero_macs(module: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """MACs per sample counting only nonzero weights (what a sparse format or kernel would do)."""
    density = {n: 1.0 - s for n, s in layer_sparsity(module).items()}
    return sum(m * density[n] for n, m in count_macs(module, input_shape).items())


def weight_sparsity(module: torch.nn.Module) -> float:
    """Fraction of zero weights over all Conv2d and Linear weights together."""
    weights = [m.weight for m in weight_layers(module).values()]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def torch_latency_ms(module: torch.nn.Module, x: torch.Tensor, runs: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of one forward pass."""
    import statistics

    import torch

    module.eval()
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            module(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def summary(module: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    macs = count_macs(module, input_shape)
    return {
        "params": float(count_params(module)),
        "nonzero_params": float(count_nonzero(module)),
        "macs": float(sum(macs.values())),
    }


def ort_latency_ms(module: torch.nn.Module, input_shape: tuple[int, ...], batch: int = 64, runs: int = 100) -> float:
    """Median ONNX Runtime (CPU) milliseconds at `batch`, after a fresh export."""
    import io
    import statistics
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros((2, *input_shape)),), buf, input_names=["x"],
                          dynamic_axes={"x": {0: "b"}}, opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), sess_options=opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    times = []
    for i in range(runs + 10):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        if i >= 10:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
