"""Fuse self-attention as torch exports transformers' default (SDPA) attention into ONNX Runtime's `Attention`.

ONNX Runtime's transformer optimizer matches eager attention (scores divided by sqrt(d), an additive
float mask). SDPA attention exports differently: the scale is split over query and key (two Muls), the
mask is a `Where(mask, 0, -inf)` added to the scores, and a `Where(IsNaN(p), 0, p)` guards the softmax.
The optimizer leaves that unfused, so a dynamic INT8 model keeps ~30 small float ops per layer.

Matched per layer, anchored on the Softmax:

    q = Transpose(0,2,1,3)(Reshape(Add(MatMul(x, Wq), bq)))      # [* sq]
    k = Transpose(0,2,3,1)(Reshape(Add(MatMul(x, Wk), bk)))      # [* sk]
    v = Transpose(0,2,1,3)(Reshape(Add(MatMul(x, Wv), bv)))
    p = Softmax(Add(MatMul(q, k), Where(mask, 0, -inf)))         # [Where(IsNaN(p), 0, p)]
    y = Reshape(Transpose(0,2,1,3)([Reshape](MatMul(p, v))))     # (batch, sequence, hidden)

and replaced by `com.microsoft.Attention(x, [Wq|Wk|Wv], [bq|bk|bv], int32(mask input))` with
`scale = sq * sk`. The mask must trace back to one integer graph input (the attention mask), which the
op reads as a raw 0/1 mask. Every query row keeps at least one key, so the NaN guard never fires and
dropping it changes nothing. Dynamic quantization then turns each `Attention` into `QAttention`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MASK_CAST = "modelpress_attention_mask_int32"


class _Graph:
    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inits = {i.name: i for i in graph.initializer}
        self._array = numpy_helper.to_array
        self.inputs = {i.name: i for i in graph.input}

    def node(self, name: str, op: str) -> Any | None:
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op else None

    def source(self, name: str) -> str:
        """`name` through any Identity nodes (torch's export writes one for each duplicate weight)."""
        while (n := self.producer.get(name)) is not None and n.op_type == "Identity":
            name = n.input[0]
        return name

    def is_weight(self, name: str) -> bool:
        return self.source(name) in self.inits

    def const(self, name: str) -> np.ndarray | None:
        name = self.source(name)
        if name in self.inits:
            return self._array(self.inits[name])
        n = self.producer.get(name)
        if n is not None and n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            return self._array(n.attribute[0].t)
        return None

    def users(self, name: str) -> list[Any]:
        """Nodes reading `name`, less Shape nodes: those only size the pattern's own Reshapes."""
        return [n for n in self.consumers.get(name, []) if n.op_type != "Shape"]

    def perm(self, node: Any) -> tuple[int, ...]:
        return tuple(next((a.ints for a in node.attribute if a.name == "perm"), ()))


def _projection(g: _Graph, name: str, perm: tuple[int, ...]) -> tuple[Any, str, str, float] | None:
    """(input tensor, weight, bias, scale) of `Transpose(perm)(Reshape(Add(MatMul(x, W), b)))`, optionally `* s`."""
    scale = 1.0
    mul = g.node(name, "Mul")
    if mul is not None:
        s = g.const(mul.input[1])
        if s is None or s.size != 1:
            return None
        scale, name = float(s.reshape(-1)[0]), mul.input[0]
    transpose = g.node(name, "Transpose")
    if transpose is None or g.perm(transpose) != perm:
        return None
    reshape = g.node(transpose.input[0], "Reshape")
    add = g.node(reshape.input[0], "Add") if reshape is not None else None
    if add is None:
        return None
    bias, product = (add.input[0], add.input[1]) if g.is_weight(add.input[0]) else (add.input[1], add.input[0])
    matmul = g.node(product, "MatMul")
    if matmul is None or not g.is_weight(bias) or not g.is_weight(matmul.input[1]):
        return None
    return matmul.input[0], matmul.input[1], bias, scale


def _mask_input(g: _Graph, name: str) -> str | None:
    """The one integer graph input the additive mask `Where(mask, 0, -inf)` is computed from."""
    where = g.node(name, "Where")
    if where is None:
        return None
    keep, drop = g.const(where.input[1]), g.const(where.input[2])
    if keep is None or drop is None or keep.size != 1 or drop.size != 1 or float(keep.reshape(-1)[0]) != 0.0 \
            or not (np.isinf(drop).all() or float(drop.reshape(-1)[0]) < -1e4):
        return None
    found, todo, seen = set(), [where.input[0]], set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in g.inputs:
            found.add(t)
        elif t in g.producer and g.producer[t].op_type != "Shape":  # a shape carries no mask values
            todo.extend(g.producer[t].input)
    ints = {t for t in found if g.inputs[t].type.tensor_type.elem_type in (6, 7)}  # INT32, INT64
    return ints.pop() if len(ints) == 1 else None


def _match(g: _Graph, softmax: Any) -> dict | None:
    score_add = g.node(softmax.input[0], "Add")
    if score_add is None:
        return None
    for scores_name, mask_name in ((score_add.input[0], score_add.input[1]), (score_add.input[1], score_add.input[0])):
        scores = g.node(scores_name, "MatMul")
        mask = _mask_input(g, mask_name)
        if scores is not None and mask is not None:
            break
    else:
        return None
    q = _projection(g, scores.input[0], (0, 2, 1, 3))
    k = _projection(g, scores.input[1], (0, 2, 3, 1))
    probs = softmax.output[0]
    users = g.consumers.get(probs, [])
    guard = next((u for u in users if u.op_type == "IsNaN"), None)
    if guard is not None:  # Where(IsNaN(p), 0, p)
        where = next((u for u in users if u.op_type == "Where"), None)
        if where is None or where.input[0] != guard.output[0] or where.input[2] != probs:
            return None
        probs = where.output[0]
    context = next((u for u in g.consumers.get(probs, []) if u.op_type == "MatMul" and u.input[0] == probs), None)
    if q is None or k is None or context is None:
        return None
    v = _projection(g, context.input[1], (0, 2, 1, 3))
    if v is None or v[3] != 1.0 or not (q[0] == k[0] == v[0]):
        return None
    # Back to (batch, sequence, hidden): [Reshape ->] Transpose(0,2,1,3) -> Reshape.
    out = context.output[0]
    users = g.users(out)
    if len(users) == 1 and users[0].op_type == "Reshape":
        out = users[0].output[0]
        users = g.users(out)
    if len(users) != 1 or users[0].op_type != "Transpose" or g.perm(users[0]) != (0, 2, 1, 3):
        return None
    users = g.users(users[0].output[0])
    if len(users) != 1 or users[0].op_type != "Reshape":
        return None
    return {"x": q[0], "weights": (q[1], k[1], v[1]), "biases": (q[2], k[2], v[2]), "scale": q[3] * k[3],
            "mask": mask, "output": users[0].output[0]}


def _prune(graph: Any) -> None:
    """Drop nodes nothing reads, repeatedly, and initializers no node reads."""
    keep = {o.name for o in graph.output}
    while True:
        used = keep | {i for n in graph.node for i in n.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def fuse_attention(model: Any, num_heads: int) -> int:
    """Fuse every matched self-attention block of `model` (an onnx ModelProto, changed in place); how many."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    g = _Graph(model.graph)
    matches = [m for s in list(model.graph.node) if s.op_type == "Softmax" and (m := _match(g, s)) is not None]
    matches = [m for m in matches if m["mask"] == matches[0]["mask"]]  # one mask input: one Cast feeds them all
    if not matches:
        return 0
    new_nodes = []
    if MASK_CAST not in g.producer:
        mask = matches[0]["mask"]
        new_nodes.append(helper.make_node("Cast", [mask], [MASK_CAST], to=TensorProto.INT32, name=MASK_CAST))
    for i, m in enumerate(matches):
        w = np.concatenate([g.const(n) for n in m["weights"]], axis=1).astype(np.float32)
        b = np.concatenate([g.const(n) for n in m["biases"]]).astype(np.float32)
        w_name, b_name = f"modelpress_attention_{i}_qkv_weight", f"modelpress_attention_{i}_qkv_bias"
        model.graph.initializer.extend([numpy_helper.from_array(w, w_name), numpy_helper.from_array(b, b_name)])
        # The fused op writes the old output tensor: later nodes read it unchanged.
        new_nodes.append(helper.make_node(
            "Attention", [m["x"], w_name, b_name, MASK_CAST], [m["output"]], name=f"modelpress_attention_{i}",
            domain="com.microsoft", num_heads=num_heads, scale=float(m["scale"])))
    old = g.producer
    for m in matches:
        node = old[m["output"]]
        model.graph.node.remove(node)  # the Reshape that wrote it; the rest is pruned as unused
    model.graph.node.extend(new_nodes)  # put in place by the topological sort below
    _prune(model.graph)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    OnnxModel.graph_topological_sort(model.graph)  # as the fp16 conversion does (ort_quantize._fp16)
    return len(matches)

