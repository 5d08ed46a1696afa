"""MLflow tracking runs that are not registry entries: a training's curves, a refused candidate's reasons.

Every function takes the client it writes through; nothing here reads global tracking state.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from modelpress.registry import tags as T

if TYPE_CHECKING:
    from mlflow import MlflowClient


def log_training_run(
    client: MlflowClient, experiment_id: str, *, technique: str, source: str, config_hash: str,
    config: dict[str, Any], metrics: dict[str, float], history: list[dict[str, float]], targets: str = "",
) -> str:
    """One run per training: the technique's config as params, per-epoch metrics, the result."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(
        experiment_id,
        run_name=f"{technique} {source}" + (f" for {targets}" if targets else ""),
        tags={T.KIND: "training", T.PREFIX + "technique": technique, T.PREFIX + "source.uri": source,
              **T.origin_tags()},
    )
    now = int(time.time() * 1000)
    params = [Param(k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)[:6000])
              for k, v in sorted(config.items())]
    series = [Metric(k, float(v), now, int(row["epoch"])) for row in history for k, v in row.items() if k != "epoch"]
    # A final value under a per-epoch name would read as epoch 0; rename it.
    per_epoch = {k for row in history for k in row}
    final = [Metric(f"best_{k}" if k in per_epoch else k, float(v), now, 0) for k, v in metrics.items()]
    log_in_batches(client, run.info.run_id, series + final, params, [RunTag(T.CONFIG_HASH, config_hash)])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def log_failed_verdict(
    client: MlflowClient, experiment_id: str, *, source: str, target: str, config_hash: str, chain: list[str],
    metrics: dict[str, float], verdict: dict[str, Any], report: str, pipeline_run_id: str | None,
) -> str:
    """A tracking run (not a registry entry) so a refused candidate's reasons can be read back from MLflow."""
    from mlflow.entities import Metric, RunTag

    run = client.create_run(
        experiment_id,
        run_name=f"verdict FAILED {source} for {target}",
        tags={T.KIND: "verdict", T.VERDICT: "failed", T.TARGET: target, T.PREFIX + "source.uri": source,
              T.CONFIG_HASH: config_hash, T.CHAIN: ">".join(chain),
              **({T.PIPELINE_RUN: pipeline_run_id} if pipeline_run_id else {}), **T.origin_tags()},
    )
    now = int(time.time() * 1000)
    rows = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
    log_in_batches(client, run.info.run_id, rows, [], [RunTag(T.PREFIX + "reason", verdict["reason"][:4000])])
    client.log_text(run.info.run_id, report, "gate_report.md")
    client.log_dict(run.info.run_id, {k: verdict[k] for k in ("passed", "reason", "results")}, "verdict.json")
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def log_in_batches(client: MlflowClient, run_id: str, metrics: list, params: list, tags: list) -> None:
    """log_batch takes at most 1000 metrics per call; params and tags go with the first."""
    for start in range(0, max(1, len(metrics)), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900],
                         params=params if start == 0 else [], tags=tags if start == 0 else [])
