"""What quantization did to the graph, in terms a user can act on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Ops that exist only in an integer graph (QOperator and dynamic formats).
INTEGER_OPS = frozenset(
    {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm", "QAttention",
     "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearAveragePool",
     "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"}
)
# The ops that carry most weights and compute; the ones a user expects to see quantized.
COMPUTE_OPS = frozenset({"Conv", "MatMul", "Gemm", "ConvTranspose", "Attention", "LSTM", "Gather"})
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


def kernels(mode: str, fmt: str | None) -> frozenset[str]:
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    if mode == "dynamic":
        return frozenset(IntegerOpsRegistry)
    return frozenset(QDQRegistry if fmt == "qdq" else QLinearOpsRegistry)


def int8_report(path: Path, mode: str, fmt: str | None, excluded: tuple[str, ...],
                float_op_types: tuple[str, ...] = ()) -> dict:
    """Counts of quantized and float compute nodes, and why each float one stayed float."""
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    inits = {i.name: i.data_type for i in graph.initializer}
    int_inits = {k for k, t in inits.items() if t in (TensorProto.INT8, TensorProto.UINT8)}
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantizable = kernels(mode, fmt)
    quantized: Counter[str] = Counter()
    stayed: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in INTEGER_OPS:
            quantized[node.op_type] += 1
            continue
        if node.op_type not in COMPUTE_OPS:
            continue
        data = list(node.input)
        if node.op_type == "Gather" and data[0] not in inits and data[0] not in dq_outputs:
            continue  # gathers from a computed tensor: shape arithmetic, no weights to quantize
        # QDQ form: an input comes from DequantizeLinear. Dynamic Gather: it reads an int8 table.
        if any(i in dq_outputs or i in int_inits for i in data):
            quantized[node.op_type] += 1
            continue
        name = node.name or node.op_type
        if node.name in excluded:
            stayed[name] = "excluded by quantize.nodes_to_exclude"
        elif node.op_type in float_op_types:
            stayed[name] = "kept float by quantize.float_op_types"
        elif node.op_type not in quantizable:
            stayed[name] = f"ONNX Runtime has no {mode} {fmt or ''} kernel for {node.op_type}".replace("  ", " ")
        elif node.op_type in ("MatMul", "Gemm") and len(data) > 1 and data[1] not in inits:
            stayed[name] = "both inputs are activations; only products with a constant weight are quantized"
        else:
            stayed[name] = "left in float by ONNX Runtime (no calibrated range or unsupported input type)"
    return {
        "quantized_nodes": sum(quantized.values()),
        "quantized_by_op": dict(sorted(quantized.items())),
        "float_nodes": len(stayed),
        "stayed_float": stayed,
        "qdq_pairs": min(ops.get("QuantizeLinear", 0), ops.get("DequantizeLinear", 0)),
        "op_counts": dict(sorted(ops.items())),
    }


def fp16_report(path: Path) -> dict:
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(path), load_external_data=False).graph
    by_type = Counter(TensorProto.DataType.Name(t.data_type) for t in graph.initializer)
    ops = Counter(n.op_type for n in graph.node)
    return {
        "fp16_initializers": by_type.get("FLOAT16", 0),
        "fp32_initializers": by_type.get("FLOAT", 0),
        "casts": ops.get("Cast", 0),
        "op_counts": dict(sorted(ops.items())),
    }
