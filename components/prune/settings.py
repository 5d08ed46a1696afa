"""What a recipe's `prune:` section may say.

    prune:
      method: structured        # or unstructured, or heads (attention heads of a transformers encoder)
      ratio: 0.5                # fraction of channels (structured) or weights (unstructured) removed
      layer_ratios: {"4": 0.25} # per-layer overrides, by torch module name
      schedule: {steps: 4}      # gradual pruning (Zhu & Gupta 2017), fine-tuning between steps
      sensitivity: {objective: macs, keep: 0.5}   # or: let a per-layer scan pick the ratios
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelpress.core.config import FrozenConfig
from modelpress.models.train import TrainConfig

# What the prune technique measures (gateable as prune_<name>); unstructured pruning adds UNSTRUCTURED_METRICS.
METRICS = ("params_before", "params", "params_ratio", "nonzero_params", "nonzero_ratio", "macs_before", "macs",
           "macs_ratio", "val_accuracy_before", "val_accuracy_pruned", "val_accuracy", "file_bytes_before",
           "file_bytes", "file_ratio")
UNSTRUCTURED_METRICS = ("macs_nonzero_ratio", "weight_sparsity")
# Head pruning (method: heads) measures these instead.
HEAD_METRICS = ("params_before", "params", "params_ratio", "heads_before", "heads", "heads_ratio", "val_cosine",
                "file_bytes_before", "file_bytes", "file_ratio")


def _check_ratio(value: float, what: str) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{what} {value} is outside [0, 1)")
    return value


class ScheduleConfig(FrozenConfig):
    steps: int = Field(
        default=4, ge=1, le=100,
        description="Pruning steps; step t of n prunes to r_f + (r_i - r_f)(1 - t/n)^exponent.",
    )
    initial_ratio: float = Field(default=0.0, ge=0.0, lt=1.0, description="Ratio before the first step (r_i).")
    exponent: float = Field(default=3.0, ge=1.0, le=10.0, description="Polynomial exponent (3 in Zhu & Gupta).")
    epochs_per_step: int = Field(
        default=3, ge=0, le=1000, description="Fine-tuning epochs after every step but the last."
    )


class FinetuneConfig(TrainConfig):
    """Training after pruning; the same keys as training, with defaults measured for recovery."""

    epochs: int = Field(default=40, ge=1, le=1000, description="Maximum fine-tuning epochs.")
    patience: int = Field(
        default=10, ge=1, le=1000, description="Stop after this many epochs without a better val."
    )
    # Digits CNN at 50% channels, 6 seeds: mean -0.74 pt with "accuracy", -0.14 pt with this.
    select: Literal["accuracy", "accuracy_then_loss"] = Field(
        default="accuracy_then_loss",
        description="Epoch kept: best val accuracy, ties broken by lower val loss (or `accuracy`: the first).",
    )


class RecoveryDistillConfig(FrozenConfig):
    """Fine-tune the pruned model to match the unpruned one's soft outputs (Hinton et al. 2015)."""

    temperature: float = Field(default=4.0, gt=0.0, le=100.0, description="Softmax temperature T.")
    alpha: float = Field(
        default=0.7, ge=0.0, le=1.0, description="Weight of the soft loss; 1 - alpha weighs the labels."
    )


class SensitivityConfig(FrozenConfig):
    ratios: tuple[float, ...] = Field(
        default=(0.25, 0.5, 0.75), min_length=1, max_length=16,
        description="Ratios each layer is probed at, one layer at a time, without fine-tuning.",
    )
    objective: Literal["params", "macs", "latency"] = Field(
        default="macs", description="What the chosen per-layer ratios must shrink."
    )
    keep: float = Field(
        gt=0.0, le=1.0, description="Keep at most this fraction of the objective (0.5: halve the MACs)."
    )
    max_accuracy_drop: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="Per-layer probes that lose more validation accuracy than this are never chosen.",
    )

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for r in v:
            _check_ratio(r, "sensitivity ratio")
        return tuple(sorted(set(v)))


class PruneConfig(FrozenConfig):
    method: Literal["unstructured", "structured", "heads"] = Field(
        description="unstructured: zero single weights (stored sparse); "
        "structured: remove whole channels and features (the model gets smaller and faster); "
        "heads: remove the least important attention heads of a transformers encoder (ranked by ablation)."
    )
    ratio: float | None = Field(
        default=None,
        description="Fraction removed, in [0, 1): of weights (unstructured) or of each layer's "
        "channels (structured). None only with `sensitivity`.",
    )
    scope: Literal["global", "per_layer"] = Field(
        default="global",
        description="unstructured only: one magnitude threshold for all layers, or `ratio` in each layer.",
    )
    layer_ratios: dict[str, float] = Field(
        default_factory=dict, max_length=1024,
        description="Per-layer ratio overrides by torch module name (an unknown name is refused with the known ones).",
    )
    exclude: tuple[str, ...] = Field(default=(), max_length=1024, description="Layers never pruned.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Gradual pruning.")
    finetune: FinetuneConfig = Field(
        default_factory=FinetuneConfig,
        description="Fine-tuning after the last step (early stopping on the validation split).",
    )
    distill: RecoveryDistillConfig | None = Field(
        default=None,
        description="Fine-tune against the unpruned model's outputs as well as the labels; None: labels only "
        "(on digits it did not help: benchmarks/README.md).",
    )
    sensitivity: SensitivityConfig | None = Field(
        default=None, description="Scan layer sensitivity and choose per-layer ratios to meet a target."
    )

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: float | None) -> float | None:
        return None if v is None else _check_ratio(v, "ratio")

    @field_validator("layer_ratios")
    @classmethod
    def _layer_ratios(cls, v: dict[str, float]) -> dict[str, float]:
        for layer, r in v.items():
            _check_ratio(r, f"layer {layer!r} ratio")
        return v

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> PruneConfig:
        if self.ratio is None and self.sensitivity is None and not self.layer_ratios:
            raise ValueError("set `ratio`, `layer_ratios` or `sensitivity`")
        if self.method == "heads" and (self.ratio is None or self.sensitivity or self.layer_ratios or self.exclude):
            raise ValueError("method heads takes `ratio` (the fraction of all heads removed) and nothing per layer")
        if self.sensitivity is not None and (self.ratio is not None or self.layer_ratios):
            raise ValueError("`sensitivity` chooses the ratios; drop `ratio` and `layer_ratios`")
        if self.method == "unstructured" and self.sensitivity and self.sensitivity.objective == "latency":
            raise ValueError(
                "sensitivity.objective latency needs method structured: zeros do not speed up dense "
                "kernels (use objective params or macs)"
            )
        if self.schedule.initial_ratio > (self.ratio or 0.0) and self.ratio is not None:
            raise ValueError(
                f"schedule.initial_ratio {self.schedule.initial_ratio} is above ratio {self.ratio}"
            )
        return self

    def ratio_at(self, final: float, step: int) -> float:
        """Ratio after schedule step `step` (1..steps) when the final ratio is `final`."""
        s = self.schedule
        start = min(s.initial_ratio, final)
        return final + (start - final) * (1.0 - step / s.steps) ** s.exponent
