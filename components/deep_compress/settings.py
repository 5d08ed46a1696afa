"""What a recipe's `deep_compress:` section may say (Han, Mao & Dally, ICLR 2016).

    deep_compress:
      prune: {method: unstructured, ratio: 0.92}   # stage 1 (the prune step's own config)
      bits: {conv: 8, linear: 5}                    # stage 2: codebook size per layer type
      index_bits: 5                                 # stage 3: relative index gaps
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modelpress.components.prune.settings import PruneConfig, ScheduleConfig
from modelpress.core.config import FrozenConfig
from modelpress.models.train import TrainConfig

# What the technique measures (gateable as deep_compress_<name>).
METRICS = ("compressed_bytes", "fp32_bytes", "compression_ratio")


class BitsConfig(FrozenConfig):
    conv: int = Field(default=8, ge=1, le=8, description="Codebook index bits of Conv2d layers (2^bits centroids).")
    linear: int = Field(default=5, ge=1, le=8, description="Codebook index bits of Linear layers.")


class CentroidTrainConfig(TrainConfig):
    epochs: int = Field(default=10, ge=1, le=1000, description="Epochs of centroid fine-tuning.")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, description="Adam learning rate of the centroids.")
    select: Literal["accuracy", "accuracy_then_loss"] = Field(
        default="accuracy_then_loss", description="Epoch kept: best val accuracy, ties broken by val loss."
    )


class DeepCompressConfig(FrozenConfig):
    prune: PruneConfig = Field(
        default_factory=lambda: PruneConfig(method="unstructured", ratio=0.9, schedule=ScheduleConfig(steps=10)),
        description="Stage 1: magnitude pruning with fine-tuning (unstructured, 10 gradual steps by default).",
    )
    bits: BitsConfig = Field(default_factory=BitsConfig, description="Stage 2: weight-sharing bits per layer type.")
    kmeans_iterations: int = Field(default=50, ge=1, le=10_000, description="Lloyd iterations per layer.")
    centroids: CentroidTrainConfig = Field(
        default_factory=CentroidTrainConfig, description="Stage 2: fine-tuning of the shared centroids."
    )
    index_bits: int = Field(default=5, ge=1, le=16, description="Stage 3: bits of a relative index gap.")
    half_precision_extras: bool = Field(
        default=True,
        description="Store codebooks, biases and norms as float16 (rounded before the final evaluation, "
        "so the decoded model is exactly the one measured).",
    )
    fold_batchnorm: bool = Field(default=True, description="Fold BatchNorm into the convs first (fewer stored floats).")

    @model_validator(mode="after")
    def _unstructured(self) -> DeepCompressConfig:
        if self.prune.method != "unstructured":
            raise ValueError("deep_compress.prune.method must be unstructured: sharing and coding work on single weights")
        return self
