"""Structured pruning: remove whole channels (Conv2d) and features (Linear), for real.

Why our own tracer rather than Torch-Pruning: Torch-Pruning follows the autograd graph
and, at an op it does not know, warns and goes on, which can leave a model whose shapes
only break at serving time. Here torch.fx gives the whole graph up front (for a source
logged with mlflow.pytorch, the torch.export program itself), every op on a pruned tensor
must be one we know how to keep consistent, and anything else is refused with the node's
name. The supported set: Conv2d, Linear, BatchNorm, activations, pooling, flatten and
reshape, residual adds, concatenations along channels, depthwise convs, grouped convs (their
outputs pruned block by block, their inputs kept whole); attention heads
are pruned by `heads.py`. `tests/unit/test_prune_structured.py` runs each case, and
`benchmarks/prune_tracer_coverage.py` runs both tracers side by side: they agree on MLPs and
residual adds, ours removes more on concatenations (0.33x params against 0.48x), and less on
grouped convs (0.59x against 0.35x: Torch-Pruning also narrows their inputs).

Channels that must be removed together form a *group*: the producers whose output
channels are coupled (two convs feeding one residual add are one group). Every place
where channels lie along an axis that some layer holds weights for is a *cut*: a
consumer's input axis, or the per-channel tensors of a BatchNorm or depthwise conv.
A cut's axis is a *layout*: one or more groups side by side (a concatenation), each
channel repeated `factor` times once flattened.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch
    from torch import fx

FIX_UNTRACEABLE = "use prune.method: unstructured for this model"

# A tensor's channel axis: groups side by side, (group id, features per channel) each.
Space = tuple[tuple[int, int], ...]


@dataclass
class Cut:
    """A layer whose weights span a channel axis laid out as `layout` ((group, factor) side by side)."""

    module: str
    kind: str  # "in": a consumer's input axis (weight dim 1); "through": BatchNorm / depthwise (dim 0)
    layout: list[tuple[Any, int]]  # (Group, factor), resolved after tracing


@dataclass
class Group:
    """Channels that are pruned together."""

    producers: list[str]
    size: int
    cuts: list[Cut] = field(default_factory=list)
    protected: str | None = None  # why this group may not be pruned
    blocks: int = 1  # a grouped conv's output: channels come in this many blocks, each keeps as many

    @property
    def name(self) -> str:
        return "+".join(self.producers)

    @property
    def consumers(self) -> list[tuple[str, int]]:
        """(module, features per channel) of each layer that reads these channels."""
        return [(c.module, f) for c in self.cuts if c.kind == "in" for g, f in c.layout if g is self]

    @property
    def passthrough(self) -> list[str]:
        """BatchNorms and depthwise convs these channels pass through."""
        return [c.module for c in self.cuts if c.kind == "through"]


def _op_name(target: Any) -> str:
    """`relu` for F.relu, torch.relu, aten.relu.default and the `relu` method alike."""
    if isinstance(target, str):
        return target
    packet = getattr(target, "overloadpacket", None)
    return getattr(packet if packet is not None else target, "__name__", str(target))


class _Tracer:
    _PASS_MODULES = (
        "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "Hardtanh", "ELU",
        "Dropout", "Dropout2d", "Identity", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    )
    _PASS_FUNCTIONS = {
        "relu", "relu_", "relu6", "gelu", "silu", "silu_", "sigmoid", "tanh", "leaky_relu", "hardswish",
        "hardtanh", "hardtanh_", "elu", "dropout", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
        "contiguous", "clone", "alias", "detach",
    }
    _MERGE_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.iadd}
    _MERGE_NAMES = {"add", "sub", "mul", "add_", "mul_"}

    def __init__(self, gm: fx.GraphModule, exclude: set[str]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.exclude = exclude
        self.groups: list[Group] = []
        self.parent: list[int] = []
        self.cuts: list[tuple[Cut, Space]] = []
        self.space: dict[fx.Node, Space | None] = {}

    # union-find over groups: a residual add merges two groups into one
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int, node: fx.Node) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.groups[ra].size != self.groups[rb].size:
            self.refuse(node, "adds tensors with different channel counts")
        ga, gb = self.groups[ra], self.groups[rb]
        ga.producers += gb.producers
        ga.protected = ga.protected or gb.protected
        ga.blocks = math.lcm(ga.blocks, gb.blocks)
        self.parent[rb] = ra
        return ra

    def new_group(self, producer: str, size: int) -> Space:
        self.groups.append(Group(producers=[producer], size=size))
        self.parent.append(len(self.groups) - 1)
        if producer in self.exclude:
            self.groups[-1].protected = f"{producer} is in prune.exclude"
        return ((len(self.groups) - 1, 1),)

    def group(self, g: int) -> Group:
        return self.groups[self.find(g)]

    def cut(self, module: str, kind: str, space: Space) -> None:
        self.cuts.append((Cut(module, kind, []), space))

    def refuse(self, node: fx.Node, why: str) -> None:
        raise ModelpressError(
            f"structured pruning cannot keep channels consistent through node {node.name!r} "
            f"({node.op} {_op_name(node.target)}): it {why}",
            FIX_UNTRACEABLE,
        )

    def protect_or_refuse(self, node: fx.Node, spaces: list[Space], why: str) -> None:
        """An unsupported op is fine on channels that are never pruned (excluded); else refuse."""
        for s in spaces:
            for g, _ in s:
                grp = self.group(g)
                if grp.protected is None:
                    raise ModelpressError(
                        f"structured pruning cannot keep channels consistent through node {node.name!r} "
                        f"({node.op} {_op_name(node.target)}): it {why}",
                        f"add {', '.join(repr(p) for p in grp.producers)} to prune.exclude to keep "
                        f"those channels whole, or {FIX_UNTRACEABLE}",
                    )

    def run(self) -> list[Group]:
        for node in self.gm.graph.nodes:
            self.space[node] = self.visit(node)
        roots = {self.find(i) for i in range(len(self.groups))}
        for cut, space in self.cuts:
            cut.layout = [(self.group(g), f) for g, f in space]
            for grp in {id(g): g for g, _ in cut.layout}.values():
                grp.cuts.append(cut)
        return [self.groups[i] for i in sorted(roots)]

    def input_spaces(self, node: fx.Node) -> list[Space]:
        return [s for a in node.all_input_nodes if (s := self.space.get(a)) is not None]

    def merge(self, node: fx.Node, a: Space, b: Space) -> Space | None:
        """Two tensors combined elementwise: their channels must go together, segment by segment."""
        if len(a) != len(b) or any(fa != fb for (_, fa), (_, fb) in zip(a, b)):
            self.protect_or_refuse(node, [a, b], "combines tensors whose channels are laid out differently")
            return None
        return tuple((self.union(ga, gb, node), fa) for (ga, fa), (gb, _) in zip(a, b))

    def visit(self, node: fx.Node) -> Space | None:
        if node.op in ("placeholder", "get_attr"):
            return None
        spaces = self.input_spaces(node)
        if node.op == "output":
            for s in spaces:
                for g, _ in s:
                    grp = self.group(g)
                    grp.protected = grp.protected or "feeds the model output"
            return None
        if node.op == "call_module":
            return self.visit_module(node, spaces)
        return self.visit_function(node, spaces)

    def visit_module(self, node: fx.Node, spaces: list[Space]) -> Space | None:
        import torch.nn as nn

        name = str(node.target)
        mod = self.modules[name]
        src = spaces[0] if spaces else None
        if isinstance(mod, nn.Conv2d):
            if mod.groups == mod.in_channels == mod.out_channels and mod.groups > 1:
                if src is not None:
                    self.through(node, name, src, spaces)
                return src
            if mod.groups != 1:
                # Each block of its outputs reads one block of its inputs: the inputs stay whole, and
                # its outputs lose the same number of channels in every block.
                for s in spaces:
                    for g, _ in s:
                        grp = self.group(g)
                        grp.protected = grp.protected or f"feeds the grouped convolution {name}"
                space = self.new_group(name, mod.out_channels)
                self.group(space[0][0]).blocks = mod.groups
                return space
            if src is not None:
                if any(f != 1 for _, f in src):
                    self.protect_or_refuse(node, spaces, "convolves flattened features")
                else:
                    self.cut(name, "in", src)
            return self.new_group(name, mod.out_channels)
        if isinstance(mod, nn.Linear):
            if src is not None:
                if _ndim(node.args[0]) != 2:
                    self.protect_or_refuse(node, spaces, "applies a Linear to a tensor of rank != 2")
                else:
                    self.cut(name, "in", src)
            return self.new_group(name, mod.out_features)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if src is not None:
                self.through(node, name, src, spaces)
            return src
        if type(mod).__name__ in self._PASS_MODULES:
            return src
        if isinstance(mod, nn.Flatten):
            return self.flatten(node, src, mod.start_dim, spaces)
        if spaces:
            self.protect_or_refuse(node, spaces, f"is a {type(mod).__name__}, which pruning does not know")
        return None

    def through(self, node: fx.Node, name: str, src: Space, spaces: list[Space]) -> None:
        if any(f != 1 for _, f in src):
            self.protect_or_refuse(node, spaces, "normalizes flattened features")
        else:
            self.cut(name, "through", src)

    def visit_function(self, node: fx.Node, spaces: list[Space]) -> Space | None:
        fname = _op_name(node.target)
        if node.target in self._MERGE_FUNCTIONS or fname in self._MERGE_NAMES:
            tensors = [a for a in node.args if hasattr(a, "op")]
            if len(tensors) == 2 and len(spaces) == 2:
                return self.merge(node, spaces[0], spaces[1])
            if len(tensors) == 2 and len(spaces) == 1:
                # e.g. x + input: the other operand's channels can't shrink with ours
                self.protect_or_refuse(node, spaces, "combines a pruned tensor with one pruning cannot shrink")
                return None
            return spaces[0] if spaces else None
        if fname in ("size", "sym_size", "dim", "shape", "getattr"):
            return None
        if fname in self._PASS_FUNCTIONS:
            return spaces[0] if spaces else None
        if node.target is operator.getitem:  # (values, indices) of max_pool2d_with_indices
            src = node.args[0]
            if spaces and _op_name(getattr(src, "target", "")) == "max_pool2d_with_indices" and node.args[1] == 0:
                return spaces[0]
        if fname == "max_pool2d_with_indices":
            return spaces[0] if spaces else None
        if fname == "cat":
            return self.cat(node, spaces)
        if fname == "mean" and spaces:
            return self.mean(node, spaces)
        if fname == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            return self.flatten(node, spaces[0] if spaces else None, start, spaces)
        if fname in ("view", "reshape", "_unsafe_view") and spaces:
            shape_in, shape_out = _shape(node.args[0]), _shape(node)
            if shape_in and shape_out and len(shape_out) == 2 and shape_out[0] == shape_in[0]:
                self.flat_reshape(node)
                return self.flatten(node, spaces[0], 1, spaces)
        if spaces:
            self.protect_or_refuse(node, spaces, "is an operation pruning does not know")
        return None

    def cat(self, node: fx.Node, spaces: list[Space]) -> Space | None:
        tensors = list(node.args[0])
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = _ndim(node)
        if rank is None:
            self.protect_or_refuse(node, spaces, "concatenates tensors of unknown rank")
            return None
        dim = dim % rank
        parts = [self.space.get(t) if hasattr(t, "op") else None for t in tensors]
        if dim != 1:  # along batch or space: every part must carry the same channels
            known = [p for p in parts if p is not None]
            if not known:
                return None
            if len(known) != len(parts):
                self.protect_or_refuse(node, known, "concatenates a pruned tensor with one pruning cannot shrink")
                return None
            out = known[0]
            for other in known[1:]:
                merged = self.merge(node, out, other)
                if merged is None:
                    return None
                out = merged
            return out
        if any(p is None for p in parts):
            # a part that no layer produces (an input, a constant): its channels cannot shrink
            self.protect_or_refuse(node, [p for p in parts if p is not None],
                                   "concatenates a pruned tensor with one pruning cannot shrink")
            return None
        if any(f != 1 for p in parts for _, f in p):  # type: ignore[union-attr]
            self.protect_or_refuse(node, parts, "concatenates flattened features")  # type: ignore[arg-type]
            return None
        return tuple(seg for p in parts for seg in p)  # type: ignore[union-attr]

    def mean(self, node: fx.Node, spaces: list[Space]) -> Space | None:
        """A global average pool written as x.mean((2, 3)): channels stay on axis 1."""
        rank = _ndim(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if rank is None or not dims or any(d % rank in (0, 1) for d in dims):
            self.protect_or_refuse(node, spaces, "averages over the batch or channel axis")
            return None
        return spaces[0]

    def flat_reshape(self, node: fx.Node) -> None:
        """`x.view(n, 512)` spells out the feature count, which pruning changes: make it `-1`."""
        if node.op == "call_method":
            args = list(node.args)
            if len(args) == 2 and isinstance(args[1], (list, tuple)):
                args[1] = [args[1][0], -1]
            elif len(args) == 3:
                args[2] = -1
            node.args = tuple(args)
        elif node.op == "call_function" and len(node.args) > 1 and isinstance(node.args[1], (list, tuple)):
            node.args = (node.args[0], [node.args[1][0], -1])

    def flatten(self, node: fx.Node, src: Space | None, start_dim: int, spaces: list[Space]) -> Space | None:
        if src is None:
            return None
        shape = _shape(node.args[0])
        if start_dim != 1 or shape is None:
            self.protect_or_refuse(node, spaces, "flattens across the batch or channel axis")
            return None
        spatial = math.prod(shape[2:])
        return tuple((g, f * spatial) for g, f in src)


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _ndim(node: Any) -> int | None:
    shape = _shape(node)
    return None if shape is None else len(shape)


def trace_groups(
    module: torch.nn.Module, input_shape: tuple[int, ...], exclude: frozenset[str] = frozenset()
) -> list[Group]:
    """The channel groups of `module`; raises ModelpressError if fx cannot trace it.

    A GraphModule (a torch.export program made trainable) is used as it is; any other
    module is traced with torch.fx first.
    """
    import torch
    from torch import fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = module if isinstance(module, fx.GraphModule) else fx.symbolic_trace(module)
        ShapeProp(gm).propagate(torch.zeros((2, *input_shape)))
    except Exception as exc:  # TraceError, or control flow on tensor values
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(
            f"cannot trace the dependencies of {type(module).__name__} for structured pruning ({reason})",
            FIX_UNTRACEABLE,
        ) from None
    groups = _Tracer(gm, set(exclude)).run()
    if gm is module:
        gm.recompile()  # reshapes that spelled out a feature count now say -1
    return groups


def _segments(cut: Cut, group: Group) -> list[Any]:
    """Index ranges of `group`'s channels along `cut`'s axis, as (size, factor) index tensors."""
    import torch

    out, offset = [], 0
    for g, f in cut.layout:
        if g is group:
            out.append(torch.arange(offset, offset + g.size * f).reshape(g.size, f))
        offset += g.size * f
    return out


def importance(module: torch.nn.Module, group: Group) -> torch.Tensor:
    """L2 norm per channel over every weight the channel touches (producers, consumers, BN scale)."""
    import torch

    mods = dict(module.named_modules())
    score = torch.zeros(group.size)
    with torch.no_grad():
        for p in group.producers:
            score += mods[p].weight.detach().flatten(1).pow(2).sum(1)
        for cut in group.cuts:
            w = getattr(mods[cut.module], "weight", None)
            if w is None:
                continue
            w = w.detach()
            for idx in _segments(cut, group):
                if cut.kind == "in":  # columns of the consumer, factor of them per channel
                    cols = w.index_select(1, idx.flatten())
                    score += cols.transpose(0, 1).reshape(group.size, -1).pow(2).sum(1)
                else:
                    score += w.index_select(0, idx[:, 0]).reshape(group.size, -1).pow(2).sum(1)
    return score.sqrt()


def remove_channels(module: torch.nn.Module, group: Group, keep: torch.Tensor) -> None:
    """Shrink every layer of `group` to the channels in `keep` (indices), in place."""
    import torch
    import torch.nn as nn

    mods = dict(module.named_modules())
    keep = keep.sort().values
    n = len(keep)

    def cut(p: torch.nn.Parameter | torch.Tensor | None, dim: int, idx: torch.Tensor) -> Any:
        if p is None:
            return None
        data = p.detach().index_select(dim, idx).clone()
        return nn.Parameter(data, requires_grad=p.requires_grad) if isinstance(p, nn.Parameter) else data

    def axis(c: Cut) -> torch.Tensor:
        """The indices kept along `c`'s whole axis: ours narrowed to `keep`, every other group's all."""
        parts, offset = [], 0
        for g, f in c.layout:
            if g is group:
                parts.append(offset + (keep[:, None] * f + torch.arange(f)).flatten())
            else:
                parts.append(torch.arange(offset, offset + g.size * f))
            offset += g.size * f
        return torch.cat(parts)

    with torch.no_grad():
        plans = [(c, axis(c)) for c in group.cuts]  # offsets read every group's current size
        for name in group.producers:
            m = mods[name]
            m.weight = cut(m.weight, 0, keep)
            if m.bias is not None:
                m.bias = cut(m.bias, 0, keep)
            if isinstance(m, nn.Conv2d):
                m.out_channels = n
            else:
                m.out_features = n
        for c, idx in plans:
            m = mods[c.module]
            if c.kind == "in":
                m.weight = cut(m.weight, 1, idx)
                if isinstance(m, nn.Conv2d):
                    m.in_channels = len(idx)
                else:
                    m.in_features = len(idx)
            elif isinstance(m, nn.Conv2d):  # depthwise
                m.weight = cut(m.weight, 0, idx)
                if m.bias is not None:
                    m.bias = cut(m.bias, 0, idx)
                m.in_channels = m.out_channels = m.groups = len(idx)
            else:  # BatchNorm
                for attr in ("weight", "bias"):
                    if getattr(m, attr) is not None:
                        setattr(m, attr, cut(getattr(m, attr), 0, idx))
                m.running_mean = cut(m.running_mean, 0, idx)
                m.running_var = cut(m.running_var, 0, idx)
                m.num_features = len(idx)
    group.size = n


def prune_groups(
    module: torch.nn.Module, groups: list[Group], keep_counts: dict[str, int]
) -> None:
    """Keep the `keep_counts[group.name]` most important channels of each named group."""
    import torch

    for g in groups:
        want = keep_counts.get(g.name)
        if want is None or want >= g.size or g.protected:
            continue
        scores = importance(module, g)
        if g.blocks == 1:
            remove_channels(module, g, scores.topk(max(1, want)).indices)
            continue
        per = g.size // g.blocks  # the same count kept in every block, the best of each
        keep = max(1, want // g.blocks)
        if keep >= per:
            continue
        remove_channels(module, g, torch.cat([b * per + scores[b * per:(b + 1) * per].topk(keep).indices
                                              for b in range(g.blocks)]))
