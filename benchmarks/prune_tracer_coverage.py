"""Structured pruning coverage: modelpress's torch.fx tracer beside Torch-Pruning, case by case.

    .venv/bin/pip install --no-deps torch-pruning==1.6.1    # only for this comparison
    python benchmarks/prune_tracer_coverage.py

Each case is a small model of a shape users log. Both prune half the channels of every layer
they may (the output layer kept whole); a result counts when the pruned model still runs, keeps
its output shape and has fewer parameters. A refusal is a result too: it names the op, where a
silent half-pruned model would fail at serving time.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).parent / "results" / "prune_tracer_coverage.json"
SHAPE = (1, 8, 8)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.a, self.b = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(x + self.b(self.a(x)))
        return self.head(x.mean((2, 3)))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.branch, self.dw = nn.Conv2d(16, 8, 1), nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.mix = nn.Conv2d(40, 32, 3, padding=1)
        self.head = nn.Linear(32 * 16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([x, torch.relu(self.branch(x)), self.dw(x)], 1)
        x = nn.functional.max_pool2d(torch.relu(self.mix(x)), 2)
        return self.head(x.view(x.size(0), -1))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(torch.relu(self.g(torch.relu(self.stem(x)))).mean((2, 3)))


class Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.head = nn.Linear(16 * 64, 10)

    def forward(self, x):
        return self.head(torch.roll(torch.relu(self.stem(x)), 1, dims=1).flatten(1))


def _exported(model: nn.Module) -> nn.Module:
    """The model as modelpress holds a source logged with mlflow.pytorch: a torch.export program, made trainable."""
    from modelpress.models.program import as_module

    prog = torch.export.export(model.eval(), (torch.zeros(4, *SHAPE),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    return as_module(prog)


CASES = {
    "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                 nn.Linear(64, 10)),
    "residual add": Residual,
    "concatenation + depthwise": Concat,
    "concatenation, as a torch.export program": lambda: _exported(Concat()),
    "grouped conv (4 groups)": Grouped,
    "channel roll (an op neither knows)": Rolled,
}


def _outcome(model: nn.Module, before: int, x: torch.Tensor, want: torch.Size) -> dict:
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - a broken pruned model is the finding
        return {"result": "broken model", "detail": str(exc).splitlines()[0][:160]}
    after = sum(p.numel() for p in model.parameters())
    if out.shape != want:
        return {"result": "broken model", "detail": f"output shape {tuple(out.shape)}"}
    return {"result": "pruned" if after < before else "unchanged", "params_ratio": round(after / before, 3)}


def ours(model: nn.Module, x: torch.Tensor, want: torch.Size) -> dict:
    from modelpress.components.prune.structured import prune_groups, trace_groups
    from modelpress.errors import ModelpressError

    before = sum(p.numel() for p in model.parameters())
    try:
        groups = trace_groups(model, SHAPE)
    except ModelpressError as exc:
        return {"result": "refused", "detail": exc.problem[:160]}
    prune_groups(model, groups, {g.name: g.size // 2 for g in groups})
    return _outcome(model, before, x, want)


def with_torch_pruning(model: nn.Module, x: torch.Tensor, want: torch.Size) -> dict:
    import warnings

    import torch_pruning as tp

    before = sum(p.numel() for p in model.parameters())
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                               pruning_ratio=0.5, ignored_layers=[last])
            pruner.step()
    except Exception as exc:  # noqa: BLE001
        return {"result": "error", "detail": str(exc).splitlines()[0][:160]}
    row = _outcome(model, before, x, want)
    if caught:
        row["warnings"] = len(caught)
    return row


def main() -> int:
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        print("torch-pruning is not installed: .venv/bin/pip install --no-deps torch-pruning==1.6.1", file=sys.stderr)
        return 2
    from modelpress.components.evaluate.measure import cpu_flags

    torch.manual_seed(0)
    x = torch.randn(3, *SHAPE)
    rows = []
    for name, build in CASES.items():
        torch.manual_seed(0)
        want = build().eval()(x).shape
        row = {"case": name, "modelpress": ours(build(), x, want), "torch_pruning": with_torch_pruning(build(), x, want)}
        rows.append(row)
        print(f"{name:42s} modelpress: {row['modelpress']['result']:9s} {row['modelpress'].get('params_ratio', '')!s:6s}"
              f"  torch-pruning: {row['torch_pruning']['result']:12s} {row['torch_pruning'].get('params_ratio', '')}")
    import torch_pruning as tp

    RESULTS.write_text(json.dumps({"rows": rows, "torch_pruning": tp.__version__, "torch": torch.__version__,
                                   "cpu_flags": cpu_flags(), "cpus": os.cpu_count()}, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
