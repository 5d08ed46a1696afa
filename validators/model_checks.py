"""Model checks: what the variant's file must satisfy besides its metric gates.

- the ONNX checker passes (with shape inference: `full_check`);
- ONNX Runtime loaded and ran it with the target's own execution provider (a CPU fallback
  does not stand in for CUDA or TensorRT: accuracy differs by provider);
- its outputs match the source's within tolerance.

The evaluate step records the first two as facts; the gate step turns all three into verdict
rows beside the gates, so they fail the verdict and show in the report the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from modelpress.core.config import FrozenConfig
from modelpress.validators.gates import GateResult


class ModelChecksConfig(FrozenConfig):
    require_target_provider: bool = Field(
        default=True,
        description="Fail unless ONNX Runtime ran the candidate with the target's own execution provider.",
    )
    min_top1_agreement: float | None = Field(
        default=0.9, ge=0.0, le=1.0,
        description="Fewest top-1 predictions (as a fraction) that must match the source's (classification); "
        "None: off.",
    )
    max_abs_logit_diff: float | None = Field(
        default=None, ge=0.0, le=1e9, description="Largest allowed |candidate - source| output; None: off."
    )
    gx_cross_check: bool = Field(
        default=False,
        description="Also validate the metrics table against the gates as a Great Expectations suite, which can "
        "only agree with the typed checker or make the verdict stricter (the unit tests run both at every "
        "threshold boundary). Off by default: importing GX costs the gate step about 2 s per target.",
    )


def onnx_checker(path: str | Path) -> dict[str, Any]:
    """The ONNX checker with shape inference, as a recorded fact rather than an exception."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - any checker failure is the finding itself
        return {"passed": False, "detail": (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}
    return {"passed": True, "detail": "valid"}


def check_model(evaluation: dict[str, Any], config: ModelChecksConfig) -> tuple[GateResult, ...]:
    facts = evaluation.get("checks", {})
    env = evaluation.get("environment", {})
    comparison = evaluation.get("comparison", {})
    out = []

    checker = facts.get("onnx_checker")
    out.append(GateResult("model: onnx checker", bool(checker and checker["passed"]), None, None, "passes",
                          f"model: onnx checker: {checker['detail'] if checker else 'not run'}"))
    if config.require_target_provider:
        want = env.get("target_provider")
        ran = env.get("latency_provider")
        ok = ran is not None and ran == want
        why = f"ran on {ran}" if ok else env.get("latency_unavailable", f"{want} did not run the model")
        out.append(GateResult("model: target provider", ok, None, None, f"runs on {want}",
                              f"model: target provider: {why}"))
    classification = evaluation.get("task", "classification") == "classification"
    for key, bound, lower in (("top1_agreement", config.min_top1_agreement, True),
                              ("max_abs_logit_diff", config.max_abs_logit_diff, False)):
        if bound is None or not classification:  # other tasks hold their outputs to gates (cosine, rmse)
            continue
        value = comparison.get(key)
        ok = value is not None and (value >= bound if lower else value <= bound)
        threshold = f"{'>=' if lower else '<='} {bound:g}"
        reason = (f"model: {key}: passed" if ok else
                  f"model: {key}: {'not measured' if value is None else f'{value:g}'} (needs {threshold})")
        out.append(GateResult(f"model: {key}", ok, value, None, threshold, reason))
    return tuple(out)
