"""The metrics a recipe's run will produce, known before anything runs.

A gate on a metric that no step produces would fail only after all the compute; the recipe
refuses it when it is loaded (so `modelpress run` and `modelpress compile --recipe` both stop
at once, naming the metric). Each technique declares what it measures (`Technique.metrics`).
"""

from __future__ import annotations

from typing import Any

# The evaluate step's own numbers whatever the task (the task's own come from core.tasks).
CANDIDATE = ("size_bytes",)
COMPARISON = ("size_ratio",)


def produced_metrics(recipe: Any, task: str | None = None) -> frozenset[str]:
    """Every metric name a gate of `recipe` may name; for `task`, else the recipe's (auto: any task's)."""
    from modelpress.core.tasks import TASKS, metrics_of

    task = task or recipe.task.kind
    names = set(CANDIDATE) | set(COMPARISON)
    for t in TASKS if task == "auto" else (task,):
        names |= set(metrics_of(t))
    for b in recipe.evaluate.batch_sizes:
        names |= {f"latency_p50_ms_b{b}", f"latency_p95_ms_b{b}", f"latency_ratio_b{b}"}
    for technique, config in recipe.enabled():
        names |= {f"{technique.name}_{m}" for m in technique.metrics(config)}
    return frozenset(names)
