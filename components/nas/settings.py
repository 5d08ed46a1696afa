"""What a recipe's `nas:` section may say.

    nas:
      space:                          # the architectures a trial may pick
        family: digits-cnn            # or mlp (any flat input: tabular models)
        depth: {min: 1, max: 3}       # conv blocks (digits-cnn) or hidden layers (mlp)
        widths: [4, 6, 8, 12, 16]     # each layer picks one
        hidden: [16, 24, 32]          # digits-cnn's dense layer
        kernel_sizes: [3, 5]          # digits-cnn, per block
        activations: [relu, hardswish]
        skip: [false, true]           # digits-cnn: a residual conv in each block
        heads: [flatten, pool]        # digits-cnn: flatten the grid, or average each channel over it
      sampler: nsga2                  # nsga2 (genetic), tpe (Bayesian) or random
      trials: 40                      # the study's budget, shared by every worker
      workers: 2                      # KFP tasks pulling trials from one study
      constraints:                    # infeasible trials are marked so; the recipe's accuracy gates join them
        - {metric: params, upper: 2961}
      select: fastest                 # fastest | smallest | most_accurate, among the feasible Pareto front

Each trial distills the registry teacher into the architecture for a short budget (`train`),
then measures validation accuracy, latency on the target's own execution provider at the
recipe's batch size (cached per architecture) and parameters. The distill step then trains the
chosen architecture in full (`distill: {student: {nas: true}}`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from modelpress.core.config import FrozenConfig
from modelpress.models.train import TrainConfig
from modelpress.models.zoo import Activation, Head

# What a trial measures; constraints and the selection rule name these.
TRIAL_METRICS = ("accuracy", "latency_ms", "params", "size_bytes")
# What the technique reports (gateable as nas_<name>).
METRICS = ("trials_complete", "trials_failed", "trials_feasible", "front_size", "chosen_trial", "chosen_accuracy",
           "chosen_latency_ms", "chosen_params", "teacher_latency_ms")


class Range(FrozenConfig):
    min: int = Field(ge=1, le=8, description="Fewest layers.")
    max: int = Field(ge=1, le=8, description="Most layers.")

    @model_validator(mode="after")
    def _order(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"depth min {self.min} is above max {self.max}")
        return self


def _choices(name: str, v: tuple) -> tuple:
    if not v:
        raise ValueError(f"{name} is empty: give at least one choice")
    if len(set(v)) != len(v):
        raise ValueError(f"{name} {list(v)} lists a choice twice")
    return v


class SearchSpace(FrozenConfig):
    family: Literal["digits-cnn", "mlp"] = Field(
        default="digits-cnn", description="Catalog family the trials are built from (mlp fits any flat input)."
    )
    depth: Range = Field(default=Range(min=1, max=3), description="Conv blocks (digits-cnn: 1-3) or hidden layers "
                         "(mlp: 1-8).")
    widths: tuple[Annotated[int, Field(ge=1, le=4096)], ...] = Field(
        default=(4, 6, 8, 12, 16, 24, 32), max_length=32,
        description="Width choices (conv channels or hidden units), picked per layer.",
    )
    hidden: tuple[Annotated[int, Field(ge=1, le=4096)], ...] = Field(
        default=(8, 16, 24, 32, 48, 64), max_length=32, description="digits-cnn: width choices of the dense layer.",
    )
    kernel_sizes: tuple[Literal[3, 5], ...] | None = Field(
        default=None, description="digits-cnn: kernel choices per block; None: (3, 5). Not for mlp."
    )
    activations: tuple[Activation, ...] = Field(default=("relu",), description="Activation choices (one per net).")
    skip: tuple[bool, ...] | None = Field(
        default=None, description="digits-cnn: whether blocks get a residual conv; None: (false, true). Not for mlp."
    )
    heads: tuple[Head, ...] | None = Field(
        default=None, description="digits-cnn: how conv features reach the dense layer (flatten, or pool: global "
        "average pooling); None: (flatten, pool). Not for mlp."
    )

    @field_validator("widths", "hidden", "activations")
    @classmethod
    def _not_empty(cls, v: tuple, info) -> tuple:  # noqa: ANN001 - pydantic's ValidationInfo
        return _choices(f"space.{info.field_name}", v)

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        for name in ("kernel_sizes", "skip", "heads"):
            value = getattr(self, name)
            if value is not None:
                if self.family == "mlp":
                    raise ValueError(f"space.{name} applies to digits-cnn only; drop it for family mlp")
                _choices(f"space.{name}", value)
        if self.family == "digits-cnn" and self.depth.max > 3:
            raise ValueError(f"space.depth.max {self.depth.max}: digits-cnn has at most 3 conv blocks")
        return self

    def kernels(self) -> tuple[int, ...]:
        return self.kernel_sizes or (3, 5)

    def skips(self) -> tuple[bool, ...]:
        return self.skip if self.skip is not None else (False, True)

    def head_choices(self) -> tuple[str, ...]:
        return self.heads or ("flatten", "pool")


class Constraint(FrozenConfig):
    metric: Literal["accuracy", "latency_ms", "params", "size_bytes"] = Field(
        description="A trial metric: validation accuracy, latency (ms at the batch size), parameters, FP32 bytes."
    )
    lower: float | None = Field(default=None, ge=-1e12, le=1e12, description="Smallest feasible value.")
    upper: float | None = Field(default=None, ge=-1e12, le=1e12, description="Largest feasible value.")

    @model_validator(mode="after")
    def _bounds(self) -> Constraint:
        if self.lower is None and self.upper is None:
            raise ValueError(f"constraint on {self.metric}: set lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"constraint on {self.metric}: lower {self.lower} is above upper {self.upper}")
        return self

    def violation(self, value: float) -> float:
        """How far `value` is outside the bounds (0 when feasible), Optuna's constraint convention."""
        low = self.lower - value if self.lower is not None else 0.0
        high = value - self.upper if self.upper is not None else 0.0
        return max(low, high, 0.0)


class TrialTrainConfig(TrainConfig):
    epochs: int = Field(default=15, ge=1, le=1000, description="Epochs per trial (a short, equal budget).")
    patience: int = Field(default=5, ge=1, le=1000, description="Stop a trial after this many epochs without a "
                          "better val.")
    learning_rate: float = Field(default=3e-3, gt=0, le=1, description="Adam learning rate (higher than a full "
                                 "training's: the budget is short).")
    select: Literal["accuracy", "accuracy_then_loss"] = Field(
        default="accuracy_then_loss", description="Epoch kept: best val accuracy, ties broken by val loss."
    )


class NasConfig(FrozenConfig):
    space: SearchSpace = Field(default_factory=SearchSpace, description="The architectures trials pick from.")
    sampler: Literal["nsga2", "tpe", "random"] = Field(
        default="nsga2", description="Optuna sampler: NSGA-II (genetic), TPE (Bayesian) or random (the baseline).",
    )
    trials: int = Field(default=40, ge=1, le=10_000, description="Completed trials the study needs (all workers).")
    workers: int = Field(default=2, ge=1, le=64, description="Parallel workers (KFP tasks) pulling trials.")
    population: int = Field(default=12, ge=2, le=1000, description="NSGA-II population size.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Sampler seed (each worker offsets it).")
    temperature: float = Field(default=4.0, gt=0.0, le=100.0, description="Distillation temperature of a trial.")
    alpha: float = Field(default=0.9, ge=0.0, le=1.0, description="Weight of the soft loss in a trial.")
    train: TrialTrainConfig = Field(default_factory=TrialTrainConfig, description="Each trial's short training.")
    batch_size: int | None = Field(
        default=None, ge=1, le=65536,
        description="Batch size latency is measured at; None: the recipe's largest evaluate batch size.",
    )
    latency_runs: int = Field(default=100, ge=3, le=10_000, description="Timed runs per architecture (min kept).")
    target: str | None = Field(
        default=None, description="Target whose execution provider latency is measured on; None: the recipe's first.",
    )
    constraints: tuple[Constraint, ...] = Field(default=(), max_length=16, description="Feasibility bounds.")
    gate_slack: float = Field(
        default=0.03, ge=0.0, le=0.5,
        description="Accuracy a trial's short training may lose beyond the recipe's accuracy gates before it counts "
        "as infeasible (the distill step's full training recovers it).",
    )
    select: Literal["fastest", "smallest", "most_accurate"] = Field(
        default="fastest", description="Which feasible Pareto-front trial the distill step trains in full.",
    )
    storage: str | None = Field(
        default=None, description="Optuna storage URL (postgresql://..., sqlite:///...) shared by the workers; "
        "None: an SQLite file in the modelpress home folder (local runs only).",
    )
    heartbeat_seconds: int = Field(
        default=10, ge=1, le=3600, description="A running trial silent for twice this long is failed and retried.",
    )
    max_retries: int = Field(default=1, ge=0, le=10, description="Retries of a trial whose worker died.")
