"""ONNX Runtime quantization: dynamic INT8, static INT8 and FP16, per hardware target.

Settings come from the target's catalog entry unless the recipe overrides
them (`settings.py`). Whatever the mode, the result is checked: a model in
which nothing was quantized is refused, never labelled INT8 or FP16.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

from modelpress.components.quantize.calibration import ListReader, calibration_batches
from modelpress.components.quantize.report import fp16_report, int8_report
from modelpress.components.quantize.settings import QuantizeConfig, QuantSettings, settings_for
from modelpress.components.quantize.tune import TuneContext
from modelpress.core import artifacts
from modelpress.core.data import DatasetSplits
from modelpress.core.hardware import HardwareTarget
from modelpress.core.technique import Result, Technique
from modelpress.errors import ModelpressError

__all__ = ["Quantize", "QuantizeConfig"]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class Quantize(Technique):
    name = "quantize"
    Config = QuantizeConfig
    description = "Quantize step (INT8 or FP16, as each target says; fp32 targets pass through)."
    input_format = "onnx"
    per_target = True
    section = "quantize"
    section_required = True
    component = "modelpress.components.quantize.component:quantize"

    def applies_to(self, target: HardwareTarget) -> bool:
        return target.quantization is not None

    def check_target(self, config: QuantizeConfig, target: HardwareTarget) -> None:  # type: ignore[override]
        if self.applies_to(target):
            settings_for(config, target)

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: QuantizeConfig,  # type: ignore[override]
        target: HardwareTarget,
        out_dir: Path,
        tuning: TuneContext | None = None,
    ) -> Result:
        if config.tune is not None:
            from modelpress.components.quantize.tune import tune

            return tune(model_dir, data, config, target, out_dir, tuning or TuneContext())
        return quantize_once(model_dir, data, settings_for(config, target), out_dir)

    def variant_tags(self, note: dict) -> dict[str, str]:
        tuned = note.get("tune")
        return {"modelpress.quantize.tuned": tuned["chosen_label"]} if tuned else {}

    def report_section(self, note: dict) -> str | None:
        from modelpress.components.quantize.tune import report_section

        return report_section(note)


def quantize_once(model_dir: Path, data: DatasetSplits | None, settings: QuantSettings, out_dir: Path) -> Result:
    """Quantize the model in `model_dir` with `settings` into `out_dir`; refused when nothing was converted."""
    manifest = artifacts.read_manifest(model_dir)
    src = artifacts.onnx_file(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / artifacts.ONNX_FILE
    notes: dict = {"settings": settings.to_dict()}

    src, dst = src.resolve(), dst.resolve()
    # chdir: ONNX Runtime's shape inference drops temp files into the working directory.
    with tempfile.TemporaryDirectory(prefix="modelpress-quant-") as tmp, contextlib.chdir(tmp):
        if settings.fuse != "none":
            prepared = _fuse(src, Path(tmp) / "fused.onnx", settings, notes)
        else:
            prepared = _preprocess(src, Path(tmp) / "pre.onnx", settings, notes)
        try:
            if settings.mode == "dynamic":
                _dynamic(prepared, dst, settings)
            elif settings.mode == "static":
                feeds = calibration_batches(
                    data, settings.calibration_split, settings.calibration_samples, manifest.inputs
                )
                notes["calibration"] = {
                    "dataset": data.name if data else None,
                    "split": settings.calibration_split,
                    "samples": sum(len(next(iter(f.values()))) for f in feeds),
                }
                _static(prepared, dst, settings, ListReader(feeds))
            else:
                _fp16(prepared, dst)
        except ModelpressError:
            raise
        except Exception as exc:
            raise ModelpressError(
                f"ONNX Runtime could not quantize {src.name} in {settings.mode} mode ({_first_line(exc)})",
                "exclude the failing nodes with quantize.nodes_to_exclude, or try another mode",
            ) from None

    _strip_shape_annotations(dst)
    if settings.mode == "fp16":
        report = fp16_report(dst)
        done = report["fp16_initializers"]
    else:
        report = int8_report(dst, settings.mode, settings.format, settings.nodes_to_exclude, settings.float_op_types)
        done = report["quantized_nodes"]
    if done == 0:
        dst.unlink(missing_ok=True)
        raise ModelpressError(
            f"nothing in {src.name} was converted by {settings.mode} quantization "
            f"(ops: {report['op_counts']})",
            "this model has no op ONNX Runtime can quantize this way; use another mode or target",
        )
    notes.update(report)
    artifacts.save_onnx(out_dir, dst, dataset=manifest.dataset)
    size, source_size = dst.stat().st_size, src.stat().st_size
    metrics = {
        "size_bytes": float(size),
        "source_size_bytes": float(source_size),
        "size_ratio": size / source_size,
    }
    if settings.mode != "fp16":
        metrics["quantized_nodes"] = float(report["quantized_nodes"])
        metrics["float_nodes"] = float(report["float_nodes"])
    return Result(model_dir=out_dir, metrics=metrics, notes=notes)


def _fuse(src: Path, dst: Path, settings: QuantSettings, notes: dict) -> Path:
    """ONNX Runtime's transformer optimizer: attention, layer norm and GELU subgraphs become single CPU ops.

    It stands in for the pre-processing (it optimizes the graph itself). A graph it fuses nothing in is
    refused: a `fuse` that changes nothing would be recorded as applied.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = attention_shape(src)
    own = 0
    if heads:  # recent transformers exports: attention in a form ONNX Runtime's optimizer does not match
        import onnx

        from modelpress.components.quantize.attention_fusion import fuse_attention

        model = onnx.load(str(src))
        if own := fuse_attention(model, heads):
            src = dst.with_name("attention.onnx")
            onnx.save_model(model, str(src))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            model = optimize_model(str(src), model_type=settings.fuse, num_heads=heads, hidden_size=hidden,
                                   use_gpu=False)
    except Exception as exc:  # noqa: BLE001 - its failures are many and unlisted; one line says which
        raise ModelpressError(f"ONNX Runtime's transformer optimizer failed on {src.name} ({_first_line(exc)})",
                              "drop quantize.fuse") from None
    fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    if own:
        fused["Attention"] = max(fused.get("Attention", 0), own)
    if not any(n for op, n in fused.items() if op in ("Attention", "MultiHeadAttention", "SkipLayerNormalization",
                                                       "LayerNormalization", "Gelu", "FastGelu", "BiasGelu")):
        raise ModelpressError(
            f"quantize.fuse {settings.fuse}: ONNX Runtime's transformer optimizer found nothing to fuse in {src.name}",
            "drop quantize.fuse (the graph is not a BERT-style encoder, or its attention was exported in a form "
            "the optimizer does not match; torch's eager attention is matched)",
        )
    model.save_model_to_file(str(dst))
    notes["preprocess"] = "replaced by the transformer optimizer" + (
        f" ({heads} heads of {hidden // heads}, read from the graph)" if heads else "")
    notes["fused"] = fused
    return dst


def attention_shape(path: Path) -> tuple[int, int]:
    """(attention heads, hidden size) of a BERT-style graph, or (0, 0) to leave them to ONNX Runtime's detection.

    The hidden size is the length of the layer norms' scale. The heads come from the shape torch's export
    builds (a Concat) for the view (batch, sequence, heads, head size): two constants side by side, either
    heads and head size (their product the hidden size) or -1 and the head size. ONNX Runtime's own
    detection looks for constant Reshape shapes, which torch's exports of eager attention do not have.
    """
    from collections import Counter

    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant" and n.attribute
              and n.attribute[0].name == "value"}
    sizes = Counter(inits[n.input[1]].dims[0] for n in graph.node
                    if n.op_type == "LayerNormalization" and len(n.input) > 1 and n.input[1] in inits)
    if not sizes:
        return 0, 0
    hidden = sizes.most_common(1)[0][0]
    through = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Unsqueeze"}

    def scalar(name: str) -> int | None:
        name = through.get(name, name)
        tensor = inits.get(name) or consts.get(name)
        if tensor is None or tensor.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            return None
        values = numpy_helper.to_array(tensor).reshape(-1)
        return int(values[0]) if values.size == 1 else None

    for node in graph.node:
        if node.op_type == "Concat":
            values = [scalar(i) for i in node.input]
            for a, b in zip(values, values[1:]):
                if a is None or b is None or b <= 1 or hidden % b:
                    continue
                if a == -1 or (a > 0 and a * b == hidden and a < b):
                    return hidden // b, hidden
    return 0, hidden


def _preprocess(src: Path, dst: Path, settings: QuantSettings, notes: dict) -> Path:
    """ONNX Runtime's pre-processing (shape inference + graph optimisation).

    Fallback, recorded in the notes: when it fails (it can on exotic graphs),
    quantization proceeds on the model as exported.
    """
    if not settings.preprocess or settings.mode == "fp16":
        notes["preprocess"] = "skipped"
        return src
    from onnxruntime.quantization import quant_pre_process

    # Symbolic shape inference fills in what ONNX's own leaves unknown. Where nothing is left unknown it
    # changes nothing the quantizer reads, and it costs a torch and sympy import (about 0.9 s per task).
    if untyped := _untyped_outputs(src):
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
            notes["preprocess"] = f"applied, with symbolic shape inference ({untyped} node outputs untyped without it)"
            return dst
        except Exception as exc:  # noqa: BLE001 - fallbacks are documented and recorded
            first = f"symbolic shape inference failed: {_first_line(exc)}"
    else:
        first = "ONNX shape inference typed every node output"
    # Symbolic shape inference fails on some transformer graphs; ONNX shape inference
    # plus graph optimisation still helps.
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        notes["preprocess"] = f"applied without symbolic shape inference ({first})"
        return dst
    except Exception as exc:  # noqa: BLE001
        notes["preprocess"] = f"failed, quantized the exported model instead: {_first_line(exc)}"
        return src


def _untyped_outputs(src: Path) -> int:
    """How many node outputs ONNX's shape inference leaves without a type and rank (weights not loaded)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src), load_external_data=False))
    graph = model.graph
    typed = {v.name for v in (*graph.value_info, *graph.output, *graph.input)
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    typed |= {i.name for i in graph.initializer}
    return sum(1 for node in graph.node for out in node.output if out and out not in typed)


def _qtype(name: str | None):
    from onnxruntime.quantization import QuantType

    return QuantType.QUInt8 if name == "quint8" else QuantType.QInt8


def _op_types(s: QuantSettings) -> list[str] | None:
    """Every op type ONNX Runtime quantizes in this mode and format, less those kept float; None: all (its default)."""
    if not s.float_op_types:
        return None
    from modelpress.components.quantize.report import kernels

    return sorted(kernels(s.mode, s.format) - set(s.float_op_types))


def _default_type(s: QuantSettings) -> dict:
    """The type the quantizer assumes where a tensor has none: outputs of fused contrib ops are untyped."""
    if s.fuse == "none":
        return {}
    from onnx import TensorProto

    return {"DefaultTensorType": TensorProto.FLOAT}


def _dynamic(src: Path, dst: Path, s: QuantSettings) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        src, dst,
        weight_type=_qtype(s.weight_type),
        per_channel=s.per_channel,
        reduce_range=s.reduce_range,
        nodes_to_exclude=list(s.nodes_to_exclude) or None,
        op_types_to_quantize=_op_types(s),
        # activations x activations stay float; DefaultTensorType: fused ops' outputs carry no type for ORT to read
        extra_options={"MatMulConstBOnly": True, **_default_type(s)},
    )


def _static(src: Path, dst: Path, s: QuantSettings, reader: ListReader) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[s.calibration_method or "minmax"]
    extra = {"ActivationSymmetric": s.symmetric_activations, "WeightSymmetric": True, **_default_type(s)}
    if s.calibration_method == "percentile":
        extra["CalibPercentile"] = s.percentile
    # The calibrators print progress to stdout; keep stdout for results.
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(
            src, dst, reader,
            quant_format=QuantFormat.QDQ if s.format == "qdq" else QuantFormat.QOperator,
            per_channel=s.per_channel,
            reduce_range=s.reduce_range,
            activation_type=_qtype(s.activation_type),
            weight_type=_qtype(s.weight_type),
            nodes_to_exclude=list(s.nodes_to_exclude) or None,
            op_types_to_quantize=_op_types(s),
            calibrate_method=method,
            extra_options=extra,
        )


def _fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    # keep_io_types: callers keep feeding float32 and reading float32.
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    # The converter appends its input Casts at the end; ONNX wants nodes in topological order.
    wrapped = OnnxModel(model)
    wrapped.topological_sort()
    onnx.save_model(wrapped.model, str(dst))


def _strip_shape_annotations(path: Path) -> None:
    """Drop value_info that pre-processing added: ONNX Runtime re-infers it, the file needn't carry it."""
    import onnx

    model = onnx.load(str(path))
    if len(model.graph.value_info):
        del model.graph.value_info[:]
        onnx.save_model(model, str(path))
