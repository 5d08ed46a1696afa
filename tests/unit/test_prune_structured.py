"""Structured pruning: channels really go, dependent layers stay consistent, and what can't be
traced is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelpress.components.prune import counting
from modelpress.components.prune.structured import importance, prune_groups, trace_groups
from modelpress.errors import ModelpressError
from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model, spec_of

SHAPE = (1, 8, 8)


def _halve(module: nn.Module, shape=SHAPE, exclude=frozenset()):
    groups = trace_groups(module, shape, exclude)
    prune_groups(module, groups, {g.name: g.size // 2 for g in groups})
    return groups


def test_cnn_groups_and_protected_output():
    groups = trace_groups(build_model(DigitsCNNSpec(), seed=0), SHAPE)
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"0", "4", "9", "11"}
    assert by_name["0"].passthrough == ["1"] and by_name["0"].consumers == [("4", 1)]
    assert by_name["4"].consumers == [("9", 4)]  # 32 channels x 2x2 -> 128 features
    assert by_name["11"].protected == "feeds the model output"


def test_cnn_half_channels_shrinks_for_real():
    model = build_model(DigitsCNNSpec(), seed=0).eval()
    x = torch.randn(5, *SHAPE)
    before = counting.summary(model, SHAPE)
    _halve(model)
    assert model(x).shape == (5, 10)
    after = counting.summary(model, SHAPE)
    assert after["macs"] / before["macs"] <= 0.55
    assert after["params"] < before["params"] / 2
    spec = spec_of(DigitsCNNSpec(), model)
    assert spec == DigitsCNNSpec(channels=(8, 16), hidden=32)
    # The narrower spec rebuilds a module the pruned weights load into, strictly.
    build_model(spec).load_state_dict(model.state_dict(), strict=True)


def test_keeps_the_most_important_channels():
    model = build_model(MLPSpec(hidden=(4,)), seed=0).eval()
    with torch.no_grad():
        model[1].weight.mul_(torch.tensor([[0.01], [5.0], [0.02], [3.0]]))
    rows, cols = model[1].weight.detach().clone(), model[3].weight.detach().clone()
    groups = trace_groups(model, (64,))
    prune_groups(model, groups, {"1": 2})
    assert model[1].out_features == 2 and model[3].in_features == 2
    assert torch.equal(model[1].weight, rows[[1, 3]])  # the two large rows stayed, in order
    assert torch.equal(model[3].weight, cols[:, [1, 3]])


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        a = torch.relu(self.bn1(self.stem(x)))
        b = self.bn2(self.conv(self.dw(a)))
        y = torch.relu(a + b)  # residual: stem and conv channels must go together
        return self.head(self.pool(y).flatten(1))


def test_residual_add_couples_both_producers():
    model = Residual().eval()
    groups = trace_groups(model, SHAPE)
    coupled = next(g for g in groups if "stem" in g.producers)
    assert set(coupled.producers) == {"stem", "conv"}
    assert set(coupled.passthrough) == {"bn1", "dw", "bn2"}
    _halve(model)
    assert model.stem.out_channels == model.conv.out_channels == model.dw.groups == 4
    assert model.bn1.num_features == model.bn2.num_features == model.head.in_features == 4
    assert model(torch.randn(3, *SHAPE)).shape == (3, 10)


class Branchy(nn.Module):
    """Two branches concatenated along channels, a third conv reading the concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.mix = nn.Conv2d(10, 8, 1)
        self.head = nn.Linear(10 * 64 + 8 * 64, 10)

    def forward(self, x):
        y = self.bn(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.head(torch.cat([y, self.mix(y)], dim=1).flatten(1))


def test_concatenation_keeps_each_branch_its_own_group():
    model = Branchy().eval()
    x = torch.randn(3, *SHAPE)
    groups = trace_groups(model, SHAPE)
    by_name = {g.name: g for g in groups}
    assert {"a", "b", "mix"} <= set(by_name)
    assert [c for c, _ in by_name["b"].consumers] == ["mix", "head"]
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.arange(10.0))  # channel i of the concatenation holds i
    a_kept = importance(model, by_name["a"]).topk(2).indices.sort().values
    b_kept = importance(model, by_name["b"]).topk(3).indices.sort().values
    prune_groups(model, groups, {"a": 2, "b": 3, "mix": 4})
    assert (model.a.out_channels, model.b.out_channels, model.mix.out_channels) == (2, 3, 4)
    assert model.bn.num_features == 5 and model.mix.in_channels == 5
    assert model.head.in_features == 5 * 64 + 4 * 64
    assert model(x).shape == (3, 10)
    # The BatchNorm kept the statistics of the channels that stayed: branch a's, then b's (offset 4).
    assert model.bn.running_mean.tolist() == [*a_kept.float().tolist(), *(b_kept + 4).float().tolist()]


class Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 64, 10)

    def forward(self, x):
        return self.head(torch.roll(self.a(x), 1, dims=1).flatten(1))  # mixes channel positions


def test_unknown_op_is_refused_by_node_and_exclude_is_the_way_out():
    with pytest.raises(ModelpressError) as exc:
        trace_groups(Rolled(), SHAPE)
    msg = str(exc.value)
    assert "node 'roll'" in msg and "prune.exclude" in msg
    groups = trace_groups(Rolled(), SHAPE, frozenset({"a"}))
    assert all(g.protected for g in groups)


class ResidualConcat(nn.Module):
    """What a user logs: a residual block, a depthwise conv, a concatenation, x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 8, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(40 * 16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        y = x + torch.relu(self.a(x))
        z = nn.functional.max_pool2d(torch.cat([y, self.b(y), self.dw(y)], 1), 2)
        return self.fc(z.view(z.size(0), -1))


@pytest.mark.parametrize("batch", [1, 4])
def test_exported_program_prunes_like_the_eager_model(batch):
    """The torch.export graph (aten ops) of a residual + concat model, logged from a batch-1 or
    batch-4 example, prunes to half its channels and exports again with a dynamic batch."""
    from modelpress.models import program as P

    model = ResidualConcat().eval()
    dims = ({0: torch.export.Dim.AUTO},)
    prog = torch.export.export(model, (torch.zeros(batch, *SHAPE),), dynamic_shapes=dims)
    gm = P.as_module(prog, batch=P.fixed_batch(prog))
    x = torch.randn(5, *SHAPE)
    assert torch.allclose(gm(x), model(x), atol=1e-5)
    groups = trace_groups(gm, SHAPE)
    coupled = next(g for g in groups if "stem" in g.producers)
    assert set(coupled.producers) == {"stem", "a"} and {"bn", "dw"} <= set(coupled.passthrough)
    _halve(gm)
    assert (gm.stem.out_channels, gm.b.out_channels, gm.dw.groups) == (8, 4, 8)
    assert gm.fc.in_features == (8 + 4 + 8) * 16
    assert gm(x).shape == (5, 10)
    inputs, _ = P.io_of(prog)
    again = P.export(gm, inputs, "pruned")
    assert again.module()(torch.randn(7, *SHAPE)).shape == (7, 10)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value: fx cannot trace it
            return self.fc(x)
        return -self.fc(x)


def test_untraceable_model_is_a_clear_error():
    with pytest.raises(ModelpressError, match="cannot trace the dependencies of DataDependent") as exc:
        trace_groups(DataDependent(), (64,))
    assert "method: unstructured" in exc.value.fix


class GroupedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.g(torch.relu(self.stem(x))))).mean((2, 3)))


def test_grouped_conv_keeps_its_inputs_and_loses_outputs_block_by_block():
    model = GroupedConv().eval()
    groups = {g.name: g for g in trace_groups(model, SHAPE)}
    assert groups["stem"].protected == "feeds the grouped convolution g"
    assert groups["g"].blocks == 4 and groups["g"].protected is None
    scores = importance(model, groups["g"])
    rows = model.g.weight.detach().clone()
    prune_groups(model, list(groups.values()), {"g": 8})
    assert model.g.out_channels == 8 and model.g.groups == 4 and model.stem.out_channels == 16
    assert model.bn.num_features == 8 and model.head.in_features == 8
    assert model(torch.randn(2, *SHAPE)).shape == (2, 10)
    # two channels kept in each block of four: the two most important of that block
    best = [i for b in range(4) for i in sorted((b * 4 + scores[b * 4:(b + 1) * 4].topk(2).indices).tolist())]
    assert torch.equal(model.g.weight, rows[best])
