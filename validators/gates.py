"""Gates: typed contracts a candidate must meet before it is registered.

A gate names one metric and holds a value threshold (bounds on the measured
number), a change threshold (how much worse than the source it may get), or
both. "Worse" follows the gate's direction. A metric that was not measured
fails its gate: silence is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelpress.core.config import FrozenConfig

# Float noise must not fail a candidate that sits exactly on a boundary.
EPS = 1e-9
# What a recipe's variants are for (`objective:`); latency adds `latency_guard` on CPU INT8 targets.
Objective = Literal["latency", "size"]


class ValueThreshold(FrozenConfig):
    lower: float | None = Field(default=None, description="Smallest passing value (inclusive).")
    upper: float | None = Field(default=None, description="Largest passing value (inclusive).")

    @model_validator(mode="after")
    def _bounds(self) -> ValueThreshold:
        if self.lower is None and self.upper is None:
            raise ValueError("set lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower {self.lower} is above upper {self.upper}")
        return self


class ChangeThreshold(FrozenConfig):
    max_degradation: float | None = Field(
        default=None,
        ge=-1e12,
        le=1e12,
        description="Largest allowed change for the worse, in the metric's units "
        "(0.01 on accuracy = 1 point). Negative demands an improvement.",
    )
    max_relative_degradation: float | None = Field(
        default=None,
        ge=-1e6,
        le=1e6,
        description="Largest allowed change for the worse, as a fraction of the source value "
        "(0.10 = 10%).",
    )

    @model_validator(mode="after")
    def _some(self) -> ChangeThreshold:
        if self.max_degradation is None and self.max_relative_degradation is None:
            raise ValueError("set max_degradation, max_relative_degradation or both")
        return self


class Gate(FrozenConfig):
    metric: str = Field(min_length=1, max_length=200, description="Metric name, e.g. accuracy.")
    direction: Literal["higher_is_better", "lower_is_better"] = Field(
        default="higher_is_better",
        description="Which way is better for this metric; unset: lower for errors, sizes and latencies "
        "(rmse, mae, max_abs_diff, size_*, latency_*), higher otherwise.",
    )
    value: ValueThreshold | None = Field(default=None, description="Bounds on the value itself.")
    change: ChangeThreshold | None = Field(
        default=None, description="Bounds on the change against the source model."
    )
    targets: tuple[str, ...] | None = Field(
        default=None, min_length=1, max_length=64,
        description="Hardware targets this gate applies to (accuracy differs by execution provider); "
        "None: every target.",
    )

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        from modelpress.core.hardware import parse_target
        from modelpress.errors import ModelpressError

        try:
            return tuple(parse_target(t).name for t in v)
        except ModelpressError as exc:
            raise ValueError(str(exc)) from None

    def applies_to(self, target: str) -> bool:
        return self.targets is None or target in self.targets

    @model_validator(mode="before")
    @classmethod
    def _known_direction(cls, data: object) -> object:
        """An RMSE or latency gate written without `direction` means lower is better, not the default."""
        if isinstance(data, dict) and "direction" not in data and isinstance(data.get("metric"), str):
            from modelpress.core.tasks import lower_is_better

            if lower_is_better(data["metric"]):
                return {**data, "direction": "lower_is_better"}
        return data

    @model_validator(mode="after")
    def _some(self) -> Gate:
        if self.value is None and self.change is None:
            raise ValueError(f"gate on {self.metric!r} needs a value or a change threshold")
        return self


@dataclass(frozen=True)
class GateResult:
    metric: str
    passed: bool
    measured: float | None
    baseline: float | None
    threshold: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    passed: bool
    results: tuple[GateResult, ...]

    @property
    def reason(self) -> str:
        failed = [r.reason for r in self.results if not r.passed]
        return "; ".join(failed) if failed else "all gates passed"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "results": [asdict(r) for r in self.results]}


def gates_for(gates: tuple[Gate, ...], target: str) -> tuple[Gate, ...]:
    """The gates that apply on `target` (a canonical target name)."""
    return tuple(g for g in gates if g.applies_to(target))


def latency_guard(target: str, objective: Objective, batch: int) -> Gate | None:
    """The default latency gate: on a CPU INT8 target, when the objective is latency, the variant may not be
    slower than its source at `batch` (the evaluate step's largest). None where it does not apply.

    INT8 is not faster by itself: on small models quantize/dequantize overhead can make it twice as slow,
    and a variant slower than its source on its own target breaks the product's promise."""
    from modelpress.core.hardware import parse_target

    if objective != "latency" or not parse_target(target).guards_latency:
        return None
    return Gate(metric=f"latency_ratio_b{batch}", direction="lower_is_better", value=ValueThreshold(upper=1.0))


def recipe_gates(gates: tuple[Gate, ...] | None, task: str, target: str) -> tuple[Gate, ...]:
    """The recipe's gates that apply on `target`, or (None) the task's defaults."""
    from modelpress.core.tasks import default_gates

    return gates_for(gates if gates is not None else default_gates(task), target)


def active_gates(gates: tuple[Gate, ...] | None, task: str, target: str, *, objective: Objective,
                 batch: int) -> tuple[Gate, ...]:
    """What a candidate for `target` must pass: `recipe_gates`, plus the latency guard (`latency_guard`)
    unless one of them already holds a latency metric."""
    chosen = recipe_gates(gates, task, target)
    guard = latency_guard(target, objective, batch)
    if guard is None or any(g.metric.startswith("latency_") for g in chosen):
        return chosen
    return (*chosen, guard)


def _describe(gate: Gate) -> str:
    parts = []
    if gate.value is not None:
        if gate.value.lower is not None:
            parts.append(f">= {gate.value.lower:g}")
        if gate.value.upper is not None:
            parts.append(f"<= {gate.value.upper:g}")
    if gate.change is not None:
        if gate.change.max_degradation is not None:
            parts.append(f"at most {gate.change.max_degradation:g} worse than source")
        if gate.change.max_relative_degradation is not None:
            parts.append(f"at most {gate.change.max_relative_degradation:.1%} worse than source")
    return ", ".join(parts)


def metric_value(metrics: Mapping[str, float], key: str) -> float | None:
    """The metric as a float, or None when it is missing or not a finite number."""
    value = metrics.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def worse_than_source(gate: Gate, measured: float, base: float) -> float:
    """How much worse than the source, signed by the gate's direction (positive: worse)."""
    return base - measured if gate.direction == "higher_is_better" else measured - base


def check(gate: Gate, candidate: Mapping[str, float], baseline: Mapping[str, float]) -> GateResult:
    threshold = _describe(gate)
    measured = metric_value(candidate, gate.metric)
    base = metric_value(baseline, gate.metric)
    if measured is None:
        return GateResult(gate.metric, False, None, base, threshold, f"{gate.metric}: not measured")

    def fail(why: str) -> GateResult:
        return GateResult(gate.metric, False, measured, base, threshold, f"{gate.metric}: {why}")

    if gate.value is not None:
        lo, hi = gate.value.lower, gate.value.upper
        if lo is not None and measured < lo - EPS * max(1.0, abs(lo)):
            return fail(f"{measured:g} is below the lower bound {lo:g}")
        if hi is not None and measured > hi + EPS * max(1.0, abs(hi)):
            return fail(f"{measured:g} is above the upper bound {hi:g}")
    if gate.change is not None:
        if base is None:
            return fail("source value not measured, so the change cannot be checked")
        worse = worse_than_source(gate, measured, base)
        limit = gate.change.max_degradation
        if limit is not None and worse > limit + EPS * max(1.0, abs(limit)):
            return fail(f"{measured:g} is {worse:g} worse than source {base:g} (allowed {limit:g})")
        rel = gate.change.max_relative_degradation
        if rel is not None:
            if base == 0:
                return fail("source value is 0, so a relative change is undefined")
            rel_worse = worse / abs(base)
            if rel_worse > rel + EPS:
                return fail(
                    f"{measured:g} is {rel_worse:.1%} worse than source {base:g} (allowed {rel:.1%})"
                )
    return GateResult(gate.metric, True, measured, base, threshold, f"{gate.metric}: passed")


def check_all(
    gates: tuple[Gate, ...], candidate: Mapping[str, float], baseline: Mapping[str, float]
) -> Verdict:
    results = tuple(check(g, candidate, baseline) for g in gates)
    return Verdict(passed=all(r.passed for r in results), results=results)


def render_markdown(verdict: Verdict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"**Verdict: {'PASSED' if verdict.passed else 'FAILED'}** — {verdict.reason}",
        "",
        "| metric | threshold | measured | source | result |",
        "|---|---|---|---|---|",
    ]
    for r in verdict.results:
        fmt = lambda v: "—" if v is None else f"{v:.6g}"  # noqa: E731
        lines.append(
            f"| {r.metric} | {r.threshold} | {fmt(r.measured)} | {fmt(r.baseline)} | "
            f"{'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"
