"""Tag keys modelpress writes on model versions and runs: one place, one prefix."""

from __future__ import annotations

import os

PREFIX = "modelpress."
KIND = PREFIX + "kind"  # "source" or "variant"
DATASET = PREFIX + "dataset"
FORMAT = PREFIX + "format"
SOURCE_NAME = PREFIX + "source.name"
SOURCE_VERSION = PREFIX + "source.version"
CHAIN = PREFIX + "chain"
CONFIG_HASH = PREFIX + "config_hash"
TARGET = PREFIX + "target"
KEY = PREFIX + "key"
VERDICT = PREFIX + "verdict"
PIPELINE_RUN = PREFIX + "pipeline_run_id"
TRAINING_RUN = PREFIX + "training_run_id"  # on a variant: the MLflow run that trained its weights
VARIANT = PREFIX + "variant"  # on a training run: the variant it produced
METRIC = PREFIX + "metric."
NOTE = PREFIX + "note."
RECIPE = PREFIX + "recipe"  # on a variant: the name of the recipe that registered it

# On every MLflow run a local pipeline run's tasks open: that run's folder, so the next start can
# mark the runs of a killed pipeline KILLED (pipelines/local.py). Absent on a cluster.
LOCAL_RUN = PREFIX + "local_run"
LOCAL_RUN_ENV = "MODELPRESS_LOCAL_RUN"

# Alias history: one MLflow run per alias move (append-only, so concurrent moves never overwrite it).
ALIAS_MOVE = "alias_move"  # the KIND of such a run
MOVE_MODEL = PREFIX + "move.model"
MOVE_ALIAS = PREFIX + "move.alias"
MOVE_FROM = PREFIX + "move.from_version"  # "" when the alias was not set
MOVE_TO = PREFIX + "move.to_version"
MOVE_ACTION = PREFIX + "move.action"  # promote or rollback


def metric_tags(metrics: dict[str, float]) -> dict[str, str]:
    """Metrics as model-version tags (searchable in the registry UI), 6 significant digits."""
    return {METRIC + k: f"{v:.6g}" for k, v in sorted(metrics.items())}


def metrics_from_tags(tags: dict[str, str]) -> dict[str, float]:
    return {k.removeprefix(METRIC): float(v) for k, v in tags.items() if k.startswith(METRIC)}


def origin_tags() -> dict[str, str]:
    """The tags that say which local pipeline run opened an MLflow run, if a local one did."""
    folder = os.environ.get(LOCAL_RUN_ENV)
    return {LOCAL_RUN: folder} if folder else {}
