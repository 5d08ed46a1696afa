"""What a recipe's `distill:` section may say.

    distill:
      student: {family: digits-cnn, width: 0.45}   # or {architecture: {...}}, {model: models:/small@champion},
                                                    # {narrow: 0.5}: the source with half its channels,
                                                    # or {nas: true}: the architecture the nas step chose
      temperature: 4
      alpha: 0.9
      hints:                                        # optional feature distillation
        - {teacher_layer: "4", student_layer: "4"}

The teacher is the recipe's `source`: any registry model, a registered variant included.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelpress.core.config import FrozenConfig
from modelpress.models.train import TrainConfig
from modelpress.models.zoo import ArchSpec, DigitsCNNSpec, MLPSpec
from modelpress.registry.uris import parse_model_uri

# Base widths each family scales: `width` multiplies them, `depth` takes the first n.
FAMILY_BASE = {
    "digits-cnn": {"channels": (16, 32, 64), "hidden": 64, "depth": 2},
    "mlp": {"hidden": (300, 100, 100, 100), "depth": 2},
}


# What the technique measures (gateable as distill_<name>).
METRICS = ("student_params", "teacher_params", "params_ratio", "val_accuracy", "teacher_val_accuracy", "best_epoch",
           "epochs_run")


class StudentConfig(FrozenConfig):
    family: Literal["digits-cnn", "mlp"] | None = Field(
        default=None, description="Student family from the catalog; or give `architecture`."
    )
    width: float = Field(
        default=0.5, gt=0.0, le=8.0, description="Multiplier on the family's base widths (digits-cnn: 16-32-64 "
        "channels, 64 hidden; mlp: 300-100-100-100)."
    )
    depth: int | None = Field(
        default=None, ge=1, le=4,
        description="Conv blocks (digits-cnn, 1-3) or hidden layers (mlp, 1-4); None: the family's 2.",
    )
    architecture: ArchSpec | None = Field(
        default=None, description="An explicit architecture (for example one a search step chose)."
    )
    model: str | None = Field(
        default=None, description="A registered torch model as the student, any architecture, trained on from "
        "its own weights: models:/<name>@<alias> or models:/<name>/<version>.",
    )
    narrow: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="The source itself with this fraction of its channels removed "
        "by structured pruning (smallest first), then trained against the full source; needs a torch source.",
    )
    nas: Literal[True] | None = Field(
        default=None, description="true: the architecture the recipe's nas step chose (needs a nas section).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> StudentConfig:
        given = [k for k in ("family", "architecture", "model", "narrow", "nas") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give the student one of `family` (with width/depth), `architecture`, `model` "
                             f"(a registered torch model), `narrow` (a ratio) or `nas: true`; got {given or 'none'}")
        if self.model is not None:
            try:
                parse_model_uri(self.model)
            except Exception as exc:  # noqa: BLE001 - parse_model_uri says what is wrong
                raise ValueError(f"student.model: {exc}") from None
        if self.family == "digits-cnn" and self.depth is not None and self.depth > 3:
            raise ValueError(f"student.depth {self.depth}: digits-cnn has at most 3 conv blocks")
        return self

    @property
    def catalog(self) -> bool:
        """Whether the student is built from the catalog (family or architecture)."""
        return self.family is not None or self.architecture is not None

    def spec(self, num_classes: int) -> DigitsCNNSpec | MLPSpec:
        """The student's architecture; a catalog student gets the teacher's number of classes."""
        if self.architecture is not None:
            return self.architecture
        base = FAMILY_BASE[self.family]  # type: ignore[index]
        depth = self.depth or base["depth"]

        def scale(n: int) -> int:
            return max(1, round(n * self.width))

        if self.family == "digits-cnn":
            return DigitsCNNSpec(channels=tuple(scale(c) for c in base["channels"][:depth]),
                                 hidden=scale(base["hidden"]), num_classes=num_classes)
        return MLPSpec(hidden=tuple(scale(h) for h in base["hidden"][:depth]), num_classes=num_classes)


class HintConfig(FrozenConfig):
    teacher_layer: str = Field(min_length=1, description="Teacher module whose output the student imitates.")
    student_layer: str = Field(min_length=1, description="Student module that imitates it (through a "
                               "learned 1x1 conv or linear projection).")
    weight: float = Field(default=1.0, gt=0.0, le=1000.0, description="Weight of this hint's MSE loss.")


class DistillTrainConfig(TrainConfig):
    epochs: int = Field(default=100, ge=1, le=1000, description="Maximum epochs.")
    patience: int = Field(default=20, ge=1, le=1000, description="Stop after this many epochs without a better val.")
    select: Literal["accuracy", "accuracy_then_loss"] = Field(
        default="accuracy_then_loss", description="Epoch kept: best val accuracy, ties broken by val loss."
    )


class DistillConfig(FrozenConfig):
    student: StudentConfig = Field(description="The student to train.")
    temperature: float = Field(default=4.0, description="Softmax temperature T (> 0) of the soft targets.")
    alpha: float = Field(
        default=0.9, description="Weight of the soft (teacher) loss, in [0, 1]; 1 - alpha weighs the labels."
    )
    hints: tuple[HintConfig, ...] = Field(default=(), max_length=16, description="Feature (hint) distillation.")
    train: DistillTrainConfig = Field(default_factory=DistillTrainConfig, description="Training of the student.")

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if not 0.0 < v <= 100.0:
            raise ValueError(f"temperature {v} must be > 0 (and at most 100)")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"alpha {v} is outside [0, 1]")
        return v
