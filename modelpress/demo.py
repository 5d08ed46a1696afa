"""The demo source model: a small CNN for scikit-learn's digits, registered as `champion`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelpress.registry.source import SourceRef

DEMO_MODEL = "digits-cnn"
DEMO_ALIAS = "champion"
DATASET = "sklearn-digits"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def existing_demo(client: MlflowClient, name: str, alias: str) -> SourceRef | None:
    from modelpress.errors import ModelpressError
    from modelpress.registry.source import resolve_source

    try:
        return resolve_source(client, f"models:/{name}@{alias}")
    except ModelpressError:
        return None


def train_and_register(
    client: MlflowClient, name: str = DEMO_MODEL, alias: str = DEMO_ALIAS, architecture: str = "digits-cnn"
) -> SourceRef:
    """Train a `models.zoo.PRESETS` architecture on digits (seeded) and register it with `alias`."""
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.errors import ModelpressError
    from modelpress.models.train import TrainConfig, accuracy, train
    from modelpress.models.zoo import PRESETS, build_model
    from modelpress.registry.source import register_source

    if architecture not in PRESETS:
        raise ModelpressError(f"unknown architecture {architecture!r}", f"use one of {', '.join(PRESETS)}")
    spec = PRESETS[architecture]
    _say(f"training {architecture} on {DATASET} (seeded; 10-60 s)")
    data = load_dataset(DATASET)
    config = TrainConfig()
    module = build_model(spec, seed=config.seed)
    result = train(module, data, config, progress=_say)
    test_acc = accuracy(module, data.x_test, data.y_test)
    _say(f"  test accuracy {test_acc:.4f} (best val {result.val_accuracy:.4f} at epoch {result.best_epoch})")
    with tempfile.TemporaryDirectory(prefix="modelpress-demo-") as tmp:
        model_dir = artifacts.save_torch(
            Path(tmp) / "model", module, spec, artifacts.TensorSpec(shape=(1, 8, 8)), dataset=DATASET
        )
        ref = register_source(
            client,
            name,
            model_dir,
            alias,
            metrics={"test_accuracy": test_acc, "val_accuracy": result.val_accuracy},
            description=f"{architecture} for {DATASET} (8x8 digits), {sum(p.numel() for p in module.parameters())} "
            f"parameters, test accuracy {test_acc:.4f}.",
        )
    _say(f"registered {ref.version_uri} with alias @{alias}")
    return ref
