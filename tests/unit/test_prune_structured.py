"""Structured pruning: channels really go, dependent layers stay consistent, and what can't be
traced is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelpress.components.prune import measure
from modelpress.components.prune.structured import prune_groups, trace_groups
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
    before = measure.summary(model, SHAPE)
    _halve(model)
    assert model(x).shape == (5, 10)
    after = measure.summary(model, SHAPE)
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
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(8 * 64, 10)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1).flatten(1))


def test_unknown_op_is_refused_by_node_and_exclude_is_the_way_out():
    with pytest.raises(ModelpressError) as exc:
        trace_groups(Branchy(), SHAPE)
    msg = str(exc.value)
    assert "node 'cat'" in msg and "prune.exclude" in msg
    groups = trace_groups(Branchy(), SHAPE, frozenset({"a", "b"}))
    assert all(g.protected for g in groups)


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
