"""The deep-compression technique: prune -> share weights -> Huffman-code, with the ratio
measured on the real file and the file decoded back before anything is reported.

    stage 1  magnitude pruning + fine-tuning            (components/prune)
    stage 2  per-layer k-means, centroid fine-tuning    (sharing.py, kmeans.py)
    stage 3  Huffman-coded indices and index gaps       (huffman.py, relative.py, container.py)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.deep_compress import container, relative
from modelpress.components.deep_compress.files import COMPRESSED_FILE
from modelpress.components.deep_compress.settings import METRICS, DeepCompressConfig
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits
from modelpress.core.hardware import HardwareTarget
from modelpress.core.progress import say as _say
from modelpress.core.technique import Result, Technique, require_torch
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch


def _entries(positions: Any, index_bits: int) -> int:
    """Stored entries of a relatively indexed tensor, fillers for long gaps included (as the coder writes them)."""
    import numpy as np

    gaps, _ = relative.encode(np.asarray(positions), np.zeros(len(positions), dtype=np.int64), index_bits, pad=1)
    return len(gaps)


def compress(
    module: torch.nn.Module,
    arch: Any,
    input_spec: artifacts.TensorSpec,
    data: DatasetSplits,
    config: DeepCompressConfig,
    dataset: str | None = None,
    say: Callable[[str], None] = _say,
    manifest: artifacts.ModelManifest | None = None,
) -> tuple[torch.nn.Module, Any, bytes, list[dict[str, Any]], dict[str, int]]:
    """Run the three stages; returns (decoded model, its spec, file bytes, per-stage rows, byte breakdown).

    `arch` is a catalog model's spec; for any other model it is None and `manifest` (a
    torch-export folder's) says its inputs: the file then carries the program's graph.
    """
    import numpy as np
    import torch
    from torch import nn

    from modelpress.components.deep_compress.sharing import freeze, share
    from modelpress.components.prune import counting
    from modelpress.components.prune.prune import prune
    from modelpress.models.train import accuracy, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model, fold_batchnorm

    fp32_bytes = 4 * sum(p.numel() for p in module.parameters())  # the source, as trained
    rows = [{"stage": "FP32 source", "bytes": fp32_bytes, "test_accuracy": accuracy(module, data.x_test, data.y_test)}]
    if config.fold_batchnorm and isinstance(arch, DigitsCNNSpec) and arch.batchnorm:
        arch, module = fold_batchnorm(arch, module)
        say("folded BatchNorm into the convolutions")
    shape = input_spec.shape
    ib = config.index_bits

    # Stage 1
    module, _, _ = prune(module, shape, data, config.prune, say)
    layers = counting.weight_layers(module)
    weight_keys = {f"{n}.weight" for n in layers}
    state = module.state_dict()
    others = sum(v.numel() for k, v in state.items() if k not in weight_keys)
    nz_entries = sum(_entries(np.flatnonzero(m.weight.detach().numpy()), ib) for m in layers.values())
    rows.append({"stage": f"pruned ({config.prune.ratio or 0:.1%} of weights)",
                 "bytes": math.ceil((nz_entries * (32 + ib) + others * 32) / 8),
                 "test_accuracy": accuracy(module, data.x_test, data.y_test)})

    # Stage 2
    bits = {n: (config.bits.conv if isinstance(m, nn.Conv2d) else config.bits.linear) for n, m in layers.items()}
    shared = share(module, bits, config.kmeans_iterations)
    say(f"weight sharing: {', '.join(f'{n}: {len(s.codebook)} centroids' for n, s in zip(bits, shared))}")
    train(module, data, config.centroids, progress=say)
    freeze(module, shared, config.half_precision_extras)
    if config.half_precision_extras:  # biases and norms as float16, before the final evaluation
        with torch.no_grad():
            for k, v in module.state_dict().items():
                if k not in weight_keys and v.is_floating_point():
                    v.copy_(v.half().float())
    extra_bits = 16 if config.half_precision_extras else 32
    shared_bits = sum(_entries(s.positions.numpy(), ib) * (bits[s.name] + ib) + len(s.codebook) * extra_bits
                      for s in shared)
    rows.append({"stage": "shared (" + ", ".join(sorted({f"{b}-bit" for b in bits.values()})) + " codebooks)",
                 "bytes": math.ceil((shared_bits + others * extra_bits) / 8),
                 "test_accuracy": accuracy(module, data.x_test, data.y_test)})

    # Stage 3
    half = np.float16 if config.half_precision_extras else np.float32
    if arch is not None:
        bundle = container.Bundle(meta={"architecture": arch.model_dump(mode="json"),
                                        "input": input_spec.model_dump(mode="json"), "dataset": dataset})
        keys = list(build_model(arch).state_dict())  # the order decode_model derives from the architecture
    else:
        skel = _program_skeleton(module, manifest)
        bundle = container.Bundle(meta={"program": skel, "dataset": dataset})
        keys = [fqn for fqn, _, _ in skel["order"]]
    by_name = {f"{s.name}.weight": s for s in shared}
    state = module.state_dict()
    for key in keys:
        value = state[key]
        bundle.order.append(key)
        if key in by_name:
            s = by_name[key]
            bundle.shared[key] = container.SharedTensor(
                s.shape, s.codebook.detach().numpy().astype(half), s.positions.numpy(),
                s.indices.numpy().astype(np.uint16), ib,
            )
        else:
            v = value.detach().numpy()
            bundle.dense[key] = v.astype(half) if v.dtype == np.float32 else v.astype(np.float32)
    data_bytes, sizes = container.encode(bundle)
    decoded = decode_model(data_bytes)
    for key, value in module.state_dict().items():  # the promise: bit for bit
        if not torch.equal(decoded.state_dict()[key].to(value.dtype), value):
            raise RuntimeError(f"deep compression round trip changed {key}")  # a bug, not bad input
    rows.append({"stage": "Huffman-coded file", "bytes": len(data_bytes),
                 "test_accuracy": accuracy(decoded, data.x_test, data.y_test)})
    for r in rows:
        r["ratio"] = fp32_bytes / r["bytes"]
    return decoded, arch, data_bytes, rows, sizes


def _program_skeleton(module: torch.nn.Module, manifest: artifacts.ModelManifest | None) -> dict[str, Any]:
    """The model's torch.export program without its weights (the file stores those itself)."""
    import tempfile

    from modelpress.models.program import save_program, skeleton

    if manifest is None:
        raise ValueError("a model without a catalog architecture needs its manifest")
    with tempfile.TemporaryDirectory(prefix="modelpress-dc-") as tmp:
        path = Path(tmp) / "program.pt2"
        save_program(module, manifest.inputs, path, "deep-compressed model")
        return skeleton(path, module)


def _program_module(meta: dict[str, Any], state: dict[str, Any], where: str) -> torch.nn.Module:
    import tempfile

    from modelpress.models.program import as_module, load_program, rebuild

    with tempfile.TemporaryDirectory(prefix="modelpress-dc-") as tmp:
        path = Path(tmp) / "program.pt2"
        path.write_bytes(rebuild(meta["program"], state))
        return as_module(load_program(path, where))


def decode_model(data: bytes, where: str = "compressed model") -> torch.nn.Module:
    """Rebuild the runnable torch model from a compressed file; every check runs first."""
    import numpy as np
    import pydantic
    import torch
    from pydantic import TypeAdapter

    from modelpress.models.zoo import ArchSpec, build_model

    built: dict[str, Any] = {}

    def layout(meta: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
        """Shapes only: nothing is allocated before the container has checked them against the file."""
        if "program" in meta:  # any architecture: the weights the graph expects, in archive order
            try:
                order = [(str(k), getattr(torch, str(d)), tuple(int(x) for x in s))
                         for k, d, s in meta["program"]["order"]]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"an unreadable program layout ({type(exc).__name__})") from None
            built["program"] = order
            return [(k, s) for k, _, s in order]
        try:
            arch = TypeAdapter(ArchSpec).validate_python(meta["architecture"])
        except (KeyError, pydantic.ValidationError) as exc:
            raise ValueError(f"no architecture this modelpress can build ({type(exc).__name__})") from None
        built["arch"] = arch
        with torch.device("meta"):  # shapes without memory
            return [(k, tuple(v.shape)) for k, v in build_model(arch).state_dict().items()]

    try:
        bundle = container.decode(data, layout)
    except container.FormatError as exc:
        raise ModelpressError(f"{where}: {exc}", "re-run the deep_compress step, or fetch the file again") from None

    def tensor(key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        arr = bundle.shared[key].dense() if key in bundle.shared else bundle.dense[key].astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype).reshape(shape)

    if "program" in bundle.meta:
        state = {key: tensor(key, dtype, shape) for key, dtype, shape in built["program"]}
        return _program_module(bundle.meta, state, where).eval()
    module = build_model(built["arch"])
    state = {key: tensor(key, ref.dtype, tuple(ref.shape)) for key, ref in module.state_dict().items()}
    module.load_state_dict(state, strict=True)
    return module.eval()


class DeepCompress(Technique):
    """Han et al. (2016): pruning, weight sharing, Huffman coding; the file is the artifact."""

    name = "deep_compress"
    Config = DeepCompressConfig
    description = "Deep compression (prune, share, Huffman-code); fp32 targets only."
    input_format = "torch"
    section = "deep_compress"
    component = "modelpress.components.deep_compress.component:deep_compress"
    METRICS = METRICS

    def check_target(self, config: DeepCompressConfig, target: HardwareTarget) -> None:  # type: ignore[override]
        if target.quantization is not None:
            raise ModelpressError(f"deep_compress stores shared float weights, but target {target.name} quantizes "
                                  "them again; use an fp32 target (cpu-x86-fp32)")

    def check_recipe(self, config: DeepCompressConfig, recipe: Any) -> None:  # type: ignore[override]
        if getattr(recipe, "prune", None) is not None:
            raise ModelpressError("deep_compress prunes as its first stage: move the prune settings to "
                                  "deep_compress.prune")

    def describe(self, result: Result) -> list[str]:
        return [f"deep_compress: {row['stage']}: {row['bytes']:,} B ({row['ratio']:.1f}x), "
                f"test accuracy {row['test_accuracy']:.4f}" for row in result.notes["stages"]]

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: DeepCompressConfig,  # type: ignore[override]
        target: HardwareTarget | None,
        out_dir: Path,
    ) -> Result:
        if data is None or len(data.x_train) == 0 or len(data.x_val) == 0:
            raise ModelpressError("deep_compress needs training and validation data to fine-tune, and has none")
        require_torch(model_dir, "deep_compress")
        module, manifest = artifacts.load_torch(model_dir)
        decoded, arch, blob, rows, sizes = compress(module, manifest.architecture, manifest.input, data, config,
                                                    manifest.dataset, manifest=manifest)
        artifacts.save_like(out_dir, decoded, manifest, arch)
        (Path(out_dir) / COMPRESSED_FILE).write_bytes(blob)
        metrics = {"compressed_bytes": float(len(blob)), "fp32_bytes": float(rows[0]["bytes"]),
                   "compression_ratio": rows[-1]["ratio"]}
        return Result(model_dir=Path(out_dir), metrics=metrics, notes={"stages": rows, "bytes": sizes})
