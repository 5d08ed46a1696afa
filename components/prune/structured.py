"""Structured pruning: remove whole channels (Conv2d) and features (Linear), for real.

Why our own tracer rather than torch-pruning: torch-pruning follows the autograd
graph and, at an op it does not know, warns and goes on, which can leave a model
whose shapes only break at serving time. Here torch.fx gives the whole graph up
front, every op on a pruned tensor must be one we know how to keep consistent,
and anything else is refused with the node's name. The supported set (Conv2d,
Linear, BatchNorm, activations, pooling, flatten, residual adds, depthwise conv)
covers the models we build; it costs no extra dependency in the image.

Channels that must be removed together form a *group*: the producers whose
output channels are coupled (two convs feeding one residual add are one group),
the BatchNorms and depthwise convs on the way, and the consumers whose input
channels (or, after a flatten, input features) are sliced to match.
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


@dataclass
class Group:
    """Channels that are pruned together (indices refer to the group's channel axis)."""

    producers: list[str]
    size: int
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (module, features per channel)
    passthrough: list[str] = field(default_factory=list)  # BatchNorm and depthwise convs
    protected: str | None = None  # why this group may not be pruned

    @property
    def name(self) -> str:
        return "+".join(self.producers)


@dataclass(frozen=True)
class _Space:
    """Which group's channels lie along a tensor's channel axis, each repeated `factor` times."""

    group: int
    factor: int = 1


class _Tracer:
    _PASS_MODULES = (
        "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "ELU",
        "Dropout", "Dropout2d", "Identity", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    )
    _PASS_FUNCTIONS = {
        "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "hardswish", "elu",
        "dropout", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "contiguous",
    }
    _MERGE_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.iadd}
    _MERGE_NAMES = {"add", "sub", "mul", "add_"}

    def __init__(self, gm: fx.GraphModule, exclude: set[str]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.exclude = exclude
        self.groups: list[Group] = []
        self.parent: list[int] = []
        self.space: dict[fx.Node, _Space | None] = {}

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
        ga.consumers += gb.consumers
        ga.passthrough += gb.passthrough
        ga.protected = ga.protected or gb.protected
        self.parent[rb] = ra
        return ra

    def new_group(self, producer: str, size: int) -> _Space:
        self.groups.append(Group(producers=[producer], size=size))
        self.parent.append(len(self.groups) - 1)
        if producer in self.exclude:
            self.groups[-1].protected = f"{producer} is in prune.exclude"
        return _Space(len(self.groups) - 1)

    def group(self, s: _Space) -> Group:
        return self.groups[self.find(s.group)]

    def refuse(self, node: fx.Node, why: str) -> None:
        raise ModelpressError(
            f"structured pruning cannot keep channels consistent through node {node.name!r} "
            f"({node.op} {_target_name(node.target)}): it {why}",
            FIX_UNTRACEABLE,
        )

    def protect_or_refuse(self, node: fx.Node, spaces: list[_Space], why: str) -> None:
        """An unsupported op is fine on channels that are never pruned (excluded); else refuse."""
        for s in spaces:
            g = self.group(s)
            if g.protected is None:
                raise ModelpressError(
                    f"structured pruning cannot keep channels consistent through node {node.name!r} "
                    f"({node.op} {_target_name(node.target)}): it {why}",
                    f"add {', '.join(repr(p) for p in g.producers)} to prune.exclude to keep "
                    f"those channels whole, or {FIX_UNTRACEABLE}",
                )

    def run(self) -> list[Group]:
        for node in self.gm.graph.nodes:
            self.space[node] = self.visit(node)
        roots = {self.find(i) for i in range(len(self.groups))}
        return [self.groups[i] for i in sorted(roots)]

    def input_spaces(self, node: fx.Node) -> list[_Space]:
        found: list[_Space] = []
        for a in node.all_input_nodes:
            s = self.space.get(a)
            if s is not None:
                found.append(s)
        return found

    def visit(self, node: fx.Node) -> _Space | None:
        import torch.nn as nn

        if node.op in ("placeholder", "get_attr"):
            return None
        spaces = self.input_spaces(node)
        if node.op == "output":
            for s in spaces:
                g = self.group(s)
                g.protected = g.protected or "feeds the model output"
            return None
        if node.op == "call_module":
            name = str(node.target)
            mod = self.modules[name]
            src = spaces[0] if spaces else None
            if isinstance(mod, nn.Conv2d):
                if mod.groups == mod.in_channels == mod.out_channels and mod.groups > 1:
                    if src is not None:
                        self.group(src).passthrough.append(name)
                    return src
                if mod.groups != 1:
                    self.protect_or_refuse(node, spaces, "is a grouped convolution")
                if src is not None:
                    if src.factor != 1:
                        self.protect_or_refuse(node, spaces, "convolves flattened features")
                    self.group(src).consumers.append((name, 1))
                return self.new_group(name, mod.out_channels)
            if isinstance(mod, nn.Linear):
                if src is not None:
                    if _ndim(node.args[0]) != 2:
                        self.protect_or_refuse(node, spaces, "applies a Linear to a tensor of rank != 2")
                    else:
                        self.group(src).consumers.append((name, src.factor))
                return self.new_group(name, mod.out_features)
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if src is not None:
                    self.group(src).passthrough.append(name)
                return src
            if type(mod).__name__ in self._PASS_MODULES:
                return src
            if isinstance(mod, nn.Flatten):
                return self.flatten(node, src, mod.start_dim, spaces)
            if spaces:
                self.protect_or_refuse(node, spaces, f"is a {type(mod).__name__}, which pruning does not know")
            return None
        # call_function / call_method
        fname = _target_name(node.target)
        if node.target in self._MERGE_FUNCTIONS or fname in self._MERGE_NAMES:
            tensors = [a for a in node.args if hasattr(a, "op")]
            if len(tensors) == 2 and len(spaces) == 2:
                a, b = spaces
                if a.factor != b.factor:
                    self.protect_or_refuse(node, spaces, "combines tensors of different layouts")
                    return None
                return _Space(self.union(a.group, b.group, node), a.factor)
            if len(tensors) == 2 and len(spaces) == 1:
                # e.g. x + input: the other operand's channels can't shrink with ours
                self.protect_or_refuse(node, spaces, "combines a pruned tensor with one pruning cannot shrink")
                return None
            return spaces[0] if spaces else None
        if fname in ("size", "dim", "shape", "getattr"):
            return None
        if fname in self._PASS_FUNCTIONS:
            return spaces[0] if spaces else None
        if fname in ("flatten",):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            return self.flatten(node, spaces[0] if spaces else None, start, spaces)
        if fname in ("view", "reshape") and spaces:
            shape_in, shape_out = _shape(node.args[0]), _shape(node)
            if shape_in and shape_out and len(shape_out) == 2 and shape_out[0] == shape_in[0]:
                return self.flatten(node, spaces[0], 1, spaces)
        if spaces:
            self.protect_or_refuse(node, spaces, "is an operation pruning does not know")
        return None

    def flatten(self, node: fx.Node, src: _Space | None, start_dim: int, spaces: list[_Space]) -> _Space | None:
        if src is None:
            return None
        shape = _shape(node.args[0])
        if start_dim != 1 or shape is None:
            self.protect_or_refuse(node, spaces, "flattens across the batch or channel axis")
            return None
        return _Space(src.group, src.factor * math.prod(shape[2:]))


def _target_name(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _ndim(node: Any) -> int | None:
    shape = _shape(node)
    return None if shape is None else len(shape)


def trace_groups(
    module: torch.nn.Module, input_shape: tuple[int, ...], exclude: frozenset[str] = frozenset()
) -> list[Group]:
    """The channel groups of `module`; raises ModelpressError if fx cannot trace it."""
    import torch
    from torch import fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = fx.symbolic_trace(module)
        ShapeProp(gm).propagate(torch.zeros((2, *input_shape)))
    except Exception as exc:  # TraceError, or control flow on tensor values
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(
            f"cannot trace the dependencies of {type(module).__name__} for structured pruning ({reason})",
            FIX_UNTRACEABLE,
        ) from None
    return _Tracer(gm, set(exclude)).run()


def importance(module: torch.nn.Module, group: Group) -> torch.Tensor:
    """L2 norm per channel over every weight the channel touches (producers, consumers, BN scale)."""
    import torch

    mods = dict(module.named_modules())
    score = torch.zeros(group.size)
    with torch.no_grad():
        for p in group.producers:
            score += mods[p].weight.detach().flatten(1).pow(2).sum(1)
        for c, factor in group.consumers:
            w = mods[c].weight.detach()
            w = w.transpose(0, 1).reshape(group.size, -1) if factor == 1 else (
                w.reshape(w.shape[0], group.size, factor).transpose(0, 1).reshape(group.size, -1)
            )
            score += w.pow(2).sum(1)
        for n in group.passthrough:
            if getattr(mods[n], "weight", None) is not None:
                score += mods[n].weight.detach().flatten(1).pow(2).sum(1) if mods[n].weight.dim() > 1 \
                    else mods[n].weight.detach().pow(2)
    return score.sqrt()


def remove_channels(module: torch.nn.Module, group: Group, keep: torch.Tensor) -> None:
    """Shrink every layer of `group` to the channels in `keep` (sorted indices), in place."""
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

    with torch.no_grad():
        for name in group.producers:
            m = mods[name]
            m.weight = cut(m.weight, 0, keep)
            if m.bias is not None:
                m.bias = cut(m.bias, 0, keep)
            if isinstance(m, nn.Conv2d):
                m.out_channels = n
            else:
                m.out_features = n
        for name in group.passthrough:
            m = mods[name]
            if isinstance(m, nn.Conv2d):  # depthwise
                m.weight = cut(m.weight, 0, keep)
                if m.bias is not None:
                    m.bias = cut(m.bias, 0, keep)
                m.in_channels = m.out_channels = m.groups = n
            else:  # BatchNorm
                for attr in ("weight", "bias"):
                    if getattr(m, attr) is not None:
                        setattr(m, attr, cut(getattr(m, attr), 0, keep))
                m.running_mean = cut(m.running_mean, 0, keep)
                m.running_var = cut(m.running_var, 0, keep)
                m.num_features = n
        for name, factor in group.consumers:
            m = mods[name]
            idx = keep if factor == 1 else (keep[:, None] * factor + torch.arange(factor)).flatten()
            m.weight = cut(m.weight, 1, idx)
            if isinstance(m, nn.Conv2d):
                m.in_channels = n
            else:
                m.in_features = len(idx)
    group.size = n


def prune_groups(
    module: torch.nn.Module, groups: list[Group], keep_counts: dict[str, int]
) -> None:
    """Keep the `keep_counts[group.name]` most important channels of each named group."""
    for g in groups:
        want = keep_counts.get(g.name)
        if want is None or want >= g.size or g.protected:
            continue
        scores = importance(module, g)
        remove_channels(module, g, scores.topk(max(1, want)).indices)
