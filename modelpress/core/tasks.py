"""What a model is scored on: classification, regression or embedding, and each task's metrics and gates.

`auto` picks the task from the data and the scored output, and says why:
no labels -> embedding (the candidate is compared with the source's outputs);
integer labels and an output with a class axis -> classification; otherwise regression.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from modelpress.core.config import FrozenConfig
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

    from modelpress.core.artifacts import TensorSpec
    from modelpress.validators.gates import Gate

TASKS = ("classification", "regression", "embedding")

# What the evaluate step measures per task, for the candidate (the source's own values feed change thresholds).
MEASURED = {
    "classification": ("accuracy",),
    "regression": ("mae", "rmse"),
    "embedding": ("cosine_mean", "cosine_min"),
}
# Candidate against source, measured side by side.
COMPARED = {
    "classification": ("top1_agreement", "max_abs_logit_diff", "max_abs_diff", "accuracy_delta"),
    "regression": ("max_abs_diff",),
    "embedding": ("max_abs_diff",),
}
# Which way is better, for metrics whose direction a gate need not spell out.
LOWER_IS_BETTER = ("mae", "rmse", "max_abs_diff", "max_abs_logit_diff")  # and size_*, latency_*


class TaskConfig(FrozenConfig):
    kind: Literal["auto", "classification", "regression", "embedding"] = Field(
        default="auto", description="How outputs are scored; auto: from the labels and the scored output "
        "(no labels: embedding), and the choice is recorded.")
    output: str | None = Field(default=None, min_length=1, max_length=500,
                               description="Model output that is scored; None: the first (recorded).")
    pooling: Literal["auto", "none", "mean", "first"] = Field(
        default="auto", description="embedding: how a (batch, sequence, hidden) output becomes one vector per "
        "sample; auto: the mean over tokens whose attention mask is 1 when the model takes a mask, else none "
        "(each token's vector is compared).")


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or metric.startswith(("latency_", "size_"))


def metrics_of(task: str) -> tuple[str, ...]:
    return MEASURED[task] + COMPARED[task]


def default_gates(task: str) -> tuple[Gate, ...]:
    """What a recipe without `gates:` is held to."""
    from modelpress.validators.gates import ChangeThreshold, Gate, ValueThreshold

    return {
        # At most 1.0 point of accuracy below the source.
        "classification": (Gate(metric="accuracy", change=ChangeThreshold(max_degradation=0.01)),),
        # RMSE at most 5% above the source's.
        "regression": (Gate(metric="rmse", direction="lower_is_better",
                            change=ChangeThreshold(max_relative_degradation=0.05)),),
        # Mean cosine similarity to the source's outputs of at least 0.98.
        "embedding": (Gate(metric="cosine_mean", value=ValueThreshold(lower=0.98)),),
    }[task]


def infer_task(config: TaskConfig, labels: np.ndarray | None, output: TensorSpec) -> tuple[str, str]:
    """The task, and why it was chosen; an explicit task is checked against the data."""
    import numpy as np

    classes = output.shape[-1] if output.shape and isinstance(output.shape[-1], int) else None
    integral = labels is not None and is_integral(labels)
    if config.kind == "classification" or (config.kind == "auto" and integral and (classes or 0) > 1):
        if labels is None:
            raise ModelpressError("task classification needs labels, and the data has none",
                                  "name the label column in data.label, or use task.kind: embedding")
        if not integral:
            raise ModelpressError("task classification needs integer class labels; the labels hold fractions",
                                  "use task.kind: regression, or write the labels as integers")
        top = int(np.max(labels)) if len(labels) else 0
        if classes is not None and (top >= classes or int(np.min(labels)) < 0):
            raise ModelpressError(
                f"labels run from {int(np.min(labels))} to {top}, but output {output.name!r} scores {classes} classes",
                "check data.label, or task.output")
        why = "set in the recipe" if config.kind != "auto" else (
            f"integer labels and output {output.name!r} scores {classes} classes")
        return "classification", why
    if config.kind == "regression" or (config.kind == "auto" and labels is not None):
        if labels is None:
            raise ModelpressError("task regression needs labels, and the data has none",
                                  "name the label column in data.label, or use task.kind: embedding")
        why = "set in the recipe" if config.kind != "auto" else (
            "labels are not integers" if not integral else f"output {output.name!r} has no class axis")
        return "regression", why
    return "embedding", "set in the recipe" if config.kind != "auto" else "the data has no labels"


def is_integral(y: np.ndarray) -> bool:
    import numpy as np

    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return True
    return y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y)))
