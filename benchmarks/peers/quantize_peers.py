"""Quantize an ONNX model with peer tools (Olive, NNCF) using their default INT8 PTQ.

Runs in the separate peers virtualenv (see README.md), never in the modelpress venv:

    /work/peers-venv/bin/python benchmarks/peers/quantize_peers.py \
        --model fp32.onnx --calib calib.npz --out OUTDIR [--tools olive nncf] [--mode static|dynamic]

--mode static (default): Olive OnnxStaticQuantization and nncf.quantize, both calibrated from --calib.
--mode dynamic: Olive OnnxDynamicQuantization (no calibration data); NNCF has no dynamic quantization
for ONNX, so it runs its default static nncf.quantize as in static mode (and says so in peers.json).
--calib may be left out only for `--mode dynamic --tools olive`.

Writes OUTDIR/<tool>.onnx (one self-contained file) for every tool that succeeds and
OUTDIR/peers.json with {tool: {"version", "seconds", "settings"}} or {tool: {"error"}}.
Exits 0 when at least one tool succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

TOOLS = ("olive", "nncf")
MODES = ("static", "dynamic")
OLIVE_DATASET = "modelpress_npz_calibration"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="float32 ONNX model to quantize")
    parser.add_argument(
        "--calib",
        type=Path,
        help=".npz with one array [N, ...] per model input, keyed by input name"
        " (required unless --mode dynamic --tools olive)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder for <tool>.onnx and peers.json"
    )
    parser.add_argument(
        "--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="peer tools to run (default: all)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="static",
        help="static (default): calibrated INT8 PTQ for both tools; dynamic: Olive OnnxDynamicQuantization"
        " (NNCF has no dynamic mode and still runs its static defaults)",
    )
    args = parser.parse_args(argv)
    if args.calib is None and needs_calibration(args.mode, args.tools):
        parser.error("--calib is required unless --mode dynamic --tools olive")
    for path in (args.model, args.calib):
        if path is not None and not path.is_file():
            parser.error(f"no such file: {path}")
    return args


def needs_calibration(mode: str, tools: list[str]) -> bool:
    """Olive's dynamic pass needs no data; everything else (NNCF always) calibrates."""
    return mode == "static" or "nncf" in tools


def keep_offline() -> None:
    """Stop the peer tools from phoning home; must run before they are imported."""
    os.environ["OLIVE_DISABLE_TELEMETRY"] = "1"
    # Olive 0.13 queues a heartbeat before it reads OLIVE_DISABLE_TELEMETRY, but checks CI first;
    # openvino_telemetry (under NNCF) skips its local id/stats files only when CI is "true".
    os.environ["CI"] = "true"
    os.environ["NNCF_CI"] = "1"  # NNCF swaps its event sender for a stub
    os.environ["HF_HUB_OFFLINE"] = "1"


def graph_inputs(model_path: Path) -> dict[str, np.dtype]:
    """Real graph inputs (not initializers) and their numpy dtypes."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return {
        inp.name: helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        for inp in graph.input
        if inp.name not in initializers
    }


def load_calibration(calib_path: Path, inputs: dict[str, np.dtype]) -> list[dict[str, np.ndarray]]:
    """One feed dict per calibration sample, each with a leading batch dim of 1."""
    with np.load(calib_path) as npz:
        missing = sorted(set(inputs) - set(npz.files))
        if missing:
            raise ValueError(f"{calib_path} lacks arrays for model inputs {missing} (has {npz.files})")
        arrays = {name: npz[name].astype(dtype, copy=False) for name, dtype in inputs.items()}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"calibration arrays need the same non-zero sample count, got {sizes}")
    count = sizes.pop()
    return [{name: a[i : i + 1] for name, a in arrays.items()} for i in range(count)]


def quantizer_kind(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> str | None:
    """Classify a Q/DQ node as 'bias', 'weights <type> per-<axis>' or 'activations <type>'."""
    if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
        return None
    zero_point = inits.get(node.input[2]) if len(node.input) > 2 else None
    # ONNX defaults to uint8 when the zero point is omitted.
    qtype = helper.tensor_dtype_to_np_dtype(zero_point.data_type).name if zero_point is not None else "uint8"
    if qtype == "int32":
        return "bias"  # ORT stores biases as int32 with scale = input scale * weight scale
    if node.input[0] in inits:
        scale = inits.get(node.input[1])
        per_channel = scale is not None and len(scale.dims) > 0 and scale.dims[0] > 1
        return f"weights {qtype} per-{'channel' if per_channel else 'tensor'}"
    return f"activations {qtype}" if node.op_type == "QuantizeLinear" else None


def integer_op_kinds(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto]
) -> set[str]:
    """Weights and activations of dynamic quantization (DynamicQuantizeLinear, *Integer, quantized Gather)."""
    if node.op_type == "DynamicQuantizeLinear":
        return {"activations uint8 dynamic (per-tensor, asymmetric, range computed at run time)"}
    if node.op_type == "DequantizeLinear":
        # onnxruntime's GatherQuant: Gather on a quantized table, then DequantizeLinear of the rows
        gather = producers.get(node.input[0])
        table = inits.get(gather.input[0]) if gather is not None and gather.op_type == "Gather" else None
        if table is None or table.data_type == onnx.TensorProto.FLOAT:
            return set()
        qtype = helper.tensor_dtype_to_np_dtype(table.data_type).name
        scale = inits.get(node.input[1])
        per_channel = scale is not None and len(scale.dims) > 0 and scale.dims[0] > 1
        return {f"Gather tables {qtype} per-{'channel' if per_channel else 'tensor'}"}
    if node.op_type not in ("MatMulInteger", "ConvInteger"):
        return set()
    weight = inits.get(node.input[1]) if len(node.input) > 1 else None
    if weight is None:
        return set()
    qtype = helper.tensor_dtype_to_np_dtype(weight.data_type).name
    zero_point = inits.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    per_channel = zero_point is not None and len(zero_point.dims) > 0 and zero_point.dims[0] > 1
    return {f"weights {qtype} per-{'channel' if per_channel else 'tensor'}"}


def describe_quantization(model: onnx.ModelProto) -> str:
    """What the quantized graph actually holds: format, quantized ops, weight/activation types, biases."""
    ops = Counter(node.op_type for node in model.graph.node)
    qoperator = any(op.startswith("QLinear") or op.endswith("Integer") for op in ops)
    fmt = "QOperator" if qoperator else "QDQ" if ops["DequantizeLinear"] else "not quantized"
    inits = {init.name: init for init in model.graph.initializer}
    kinds = {quantizer_kind(node, inits) for node in model.graph.node} - {None}
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        kinds |= integer_op_kinds(node, inits, producers)
    quant_ops = (
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        *sorted(op for op in ops if op.startswith("QLinear") or op.endswith("Integer")),
    )
    counts = " ".join(f"{op}x{ops[op]}" for op in quant_ops if ops[op])
    described = [fmt, *sorted(k.replace("bias", "int32 biases") for k in kinds)]
    return "observed: " + ", ".join(described) + (f"; ops {counts}" if counts else "")


def save_single_file(model: onnx.ModelProto, out_path: Path) -> None:
    # Tools may keep weights as external data; the benchmark wants one file.
    onnx.save_model(model, str(out_path), save_as_external_data=False)


def quantize_olive(
    model_path: Path, samples: list[dict[str, np.ndarray]] | None, out_path: Path, mode: str = "static"
) -> dict:
    """Olive workflow with one OnnxStaticQuantization or OnnxDynamicQuantization pass at its defaults, CPU EP."""
    from olive.workflows import run as olive_run

    if mode == "static":
        from olive.data.registry import Registry

        # Olive's default dataloader batches with batch_size=1, so hand it samples without the batch dim;
        # its calibration reader then feeds every input by name, cast to the graph input's dtype.
        unbatched = [({name: a[0] for name, a in feed.items()}, 0) for feed in samples]
        Registry.register_dataset(OLIVE_DATASET)(lambda **_: unbatched)
        data_configs = [{"name": "calib", "load_dataset_config": {"type": OLIVE_DATASET}}]
        quant_pass = {"type": "OnnxStaticQuantization", "data_config": "calib"}
    else:
        data_configs = []
        quant_pass = {"type": "OnnxDynamicQuantization"}

    with tempfile.TemporaryDirectory(prefix="olive_peers_") as work:
        config = {
            "input_model": {"type": "ONNXModel", "model_path": str(model_path.resolve())},
            "systems": {
                "local_system": {
                    "type": "LocalSystem",
                    "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}],
                }
            },
            "data_configs": data_configs,
            "passes": {"quantization": quant_pass},
            "engine": {
                "host": "local_system",
                "target": "local_system",
                "cache_dir": str(Path(work, "cache")),
                "output_dir": str(Path(work, "output")),
                "evaluate_input_model": False,
                "log_severity_level": 2,
            },
        }
        saved_tempdir = tempfile.tempdir
        try:
            start = time.perf_counter()
            output = olive_run(config, tempdir=str(Path(work, "tmp")))  # keeps Olive's scratch in `work` too
            best = output.get_best_candidate() if output is not None else None
            if best is None:
                raise RuntimeError("Olive workflow produced no output model")
            model = onnx.load(best.model_path)  # may be nested or use external data
            save_single_file(model, out_path)
            seconds = time.perf_counter() - start
        finally:
            tempfile.tempdir = saved_tempdir
    return {
        "version": version("olive-ai"),
        "seconds": round(seconds, 3),
        "settings": f"{olive_defaults(mode)}; {describe_quantization(model)}",
    }


def olive_defaults(mode: str = "static") -> str:
    """The OnnxStaticQuantization / OnnxDynamicQuantization defaults, read from Olive rather than restated."""
    from olive.hardware.accelerator import AcceleratorSpec
    from olive.passes.onnx.quantization import OnnxDynamicQuantization, OnnxStaticQuantization

    spec = AcceleratorSpec(accelerator_type="cpu", execution_provider="CPUExecutionProvider")
    if mode == "dynamic":
        params = OnnxDynamicQuantization.default_config(spec)
        keys = (
            "precision",
            "op_types_to_quantize",
            "per_channel",
            "reduce_range",
            "weight_symmetric",
            "activation_symmetric",
            "quant_preprocess",
        )
        shown = ", ".join(
            f"{k}={getattr(params[k].default_value, 'value', params[k].default_value)}" for k in keys
        )
        return (
            f"OnnxDynamicQuantization defaults on CPUExecutionProvider"
            f" (onnxruntime {version('onnxruntime')} quantize_dynamic): {shown}"
            " (precision is the weight type; op_types_to_quantize=None means onnxruntime's IntegerOps"
            " registry: MatMul, Conv, Gather, Attention, ...; activations are quantized at run time"
            " by DynamicQuantizeLinear); no calibration data"
        )
    params = OnnxStaticQuantization.default_config(spec)
    keys = (
        "quant_format",
        "precision",
        "activation_type",
        "per_channel",
        "reduce_range",
        "calibrate_method",
        "weight_symmetric",
        "activation_symmetric",
        "quant_preprocess",
        "prepare_qdq_config",
    )
    shown = ", ".join(
        f"{k}={getattr(params[k].default_value, 'value', params[k].default_value)}" for k in keys
    )
    return (
        f"OnnxStaticQuantization defaults on CPUExecutionProvider"
        f" (onnxruntime {version('onnxruntime')} quantize_static): {shown}"
        " (weight_symmetric=None means symmetric for signed types); calibration batch 1"
    )


def quantize_nncf(
    model_path: Path, samples: list[dict[str, np.ndarray]], out_path: Path, mode: str = "static"
) -> dict:
    """nncf.quantize at its defaults (CPU target), every calibration sample used once.

    NNCF has no dynamic quantization for ONNX models, so mode="dynamic" runs the same static defaults.
    """
    import nncf

    model = onnx.load(str(model_path))
    # Items are already feed dicts of batch 1, so the default identity transform suffices.
    dataset = nncf.Dataset(samples)
    start = time.perf_counter()
    quantized = nncf.quantize(model, dataset, target_device=nncf.TargetDevice.CPU, subset_size=len(samples))
    save_single_file(quantized, out_path)
    seconds = time.perf_counter() - start
    settings = (
        ("NNCF has no dynamic mode; static defaults: " if mode == "dynamic" else "")
        + "nncf.quantize defaults, target_device=CPU: preset=None (= performance: symmetric weights"
        " and activations), fast_bias_correction=True, ranges: weights min/max,"
        f" activations mean over samples of per-sample min/max; subset_size={len(samples)}, calibration batch 1"
    )
    return {
        "version": version("nncf"),
        "seconds": round(seconds, 3),
        "settings": f"{settings}; {describe_quantization(quantized)}",
    }


def run_tool(
    name: str,
    model_path: Path,
    samples: list[dict[str, np.ndarray]] | None,
    out_dir: Path,
    mode: str = "static",
) -> dict:
    """Run one tool; a failure becomes a one-line error instead of stopping the others."""
    quantize = {"olive": quantize_olive, "nncf": quantize_nncf}[name]
    out_path = out_dir / f"{name}.onnx"
    try:
        return quantize(model_path, samples, out_path, mode)
    except Exception as exc:  # any tool failure is reported, not fatal
        traceback.print_exc(file=sys.stderr)
        out_path.unlink(missing_ok=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return {"error": f"{type(exc).__name__}: {first_line}"[:300]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_offline()
    samples = None
    if args.calib is not None:
        try:
            samples = load_calibration(args.calib, graph_inputs(args.model))
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)

    results = {name: run_tool(name, args.model, samples, args.out, args.mode) for name in args.tools}
    (args.out / "peers.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results.items():
        outcome = (
            entry["error"] if "error" in entry else f"{entry['seconds']} s -> {args.out / f'{name}.onnx'}"
        )
        print(f"{name}: {outcome}")
    return 0 if any("error" not in entry for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
