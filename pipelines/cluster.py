"""Sending the compiled pipeline to a Kubeflow Pipelines host: one run, or a recurring one.

Host and token come from flags or the environment (`KF_PIPELINES_ENDPOINT`,
`KF_PIPELINES_TOKEN`). Everything that can be checked here is checked before the first
request: the recipe (gates included), the cron expression, the token, and that the host
answers at all, so a typo never half-creates a schedule.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpress.errors import ModelpressError
from modelpress.pipelines.arguments import pipeline_arguments

HOST_ENV = "KF_PIPELINES_ENDPOINT"  # kfp's own variable
TOKEN_ENV = "KF_PIPELINES_TOKEN"
DEFAULT_EXPERIMENT = "modelpress"


@dataclass(frozen=True)
class Cluster:
    host: str
    token: str


def cluster_from(host: str | None, token: str | None) -> Cluster:
    host = (host or os.environ.get(HOST_ENV) or "").rstrip("/")
    if not host:
        raise ModelpressError("no Kubeflow Pipelines host given", f"pass --host or set {HOST_ENV}")
    if not host.startswith(("http://", "https://")):
        raise ModelpressError(f"Kubeflow host {host!r} is not an http(s) URL", "e.g. https://kubeflow.example/pipeline")
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ModelpressError(f"no auth token for Kubeflow host {host}", f"pass --token or set {TOKEN_ENV}")
    return Cluster(host, token)


def check_tracking_uri(uri: str | None) -> str:
    """Tasks on the cluster need an MLflow server they can reach, not this machine's SQLite file."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri or not uri.startswith(("http://", "https://")):
        raise ModelpressError(
            f"the cluster's tasks need an MLflow server URI, not {uri or 'the embedded store'}",
            "pass --tracking-uri http://mlflow.<namespace>.svc:5000",
        )
    return uri


def _client(cluster: Cluster) -> Any:
    """A kfp.Client, after checking the host answers (kfp itself would retry for minutes)."""
    try:
        with urllib.request.urlopen(cluster.host + "/apis/v2beta1/healthz", timeout=10) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ModelpressError(f"Kubeflow host {cluster.host} refused the token (HTTP {exc.code})",
                                  f"pass a valid --token or {TOKEN_ENV}") from None
        # Any other HTTP answer means it is up; let kfp handle the rest.
    except (urllib.error.URLError, OSError) as exc:
        raise ModelpressError(f"Kubeflow host {cluster.host} is unreachable ({getattr(exc, 'reason', exc)})",
                              f"check --host / {HOST_ENV} and the network") from None
    import kfp

    return kfp.Client(host=cluster.host, existing_token=cluster.token, namespace="")


def _package(recipe: Any, tmp: Path) -> Path:
    from modelpress.pipelines.compile import compile_pipeline

    return compile_pipeline(tmp / "pipeline.yaml", recipe)


def submit(cluster: Cluster, recipe: Any, tracking_uri: str, experiment: str, run_name: str | None,
           force: bool = False) -> dict[str, str]:
    """One run of the compiled pipeline (`create_run_from_pipeline_package`)."""
    client = _client(cluster)
    with tempfile.TemporaryDirectory(prefix="modelpress-submit-") as tmp:
        result = client.create_run_from_pipeline_package(
            str(_package(recipe, Path(tmp))),
            arguments=pipeline_arguments(recipe, tracking_uri, force),
            run_name=run_name or f"modelpress {recipe.source} for {', '.join(recipe.targets)}",
            experiment_name=experiment,
        )
    return {"run_id": result.run_id, "host": cluster.host}


def schedule(cluster: Cluster, recipe: Any, tracking_uri: str, experiment: str, name: str, cron: str,
             max_concurrency: int) -> dict[str, Any]:
    """Create the recurring run `name`, or replace the one of that name (KFP cannot edit one in place)."""
    from modelpress.pipelines.cron import normalize_cron

    cron = normalize_cron(cron)  # before any request
    client = _client(cluster)
    exp = client.create_experiment(experiment)  # returns the existing one of that name
    replaced = []
    for old in client.list_recurring_runs(experiment_id=exp.experiment_id, page_size=100).recurring_runs or []:
        if old.display_name == name:
            client.delete_recurring_run(old.recurring_run_id)
            replaced.append(old.recurring_run_id)
    with tempfile.TemporaryDirectory(prefix="modelpress-schedule-") as tmp:
        rr = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron,
            max_concurrency=max_concurrency, no_catchup=True,
            params=pipeline_arguments(recipe, tracking_uri),
            pipeline_package_path=str(_package(recipe, Path(tmp))),
        )
    return {"recurring_run_id": rr.recurring_run_id, "cron": cron, "replaced": replaced, "host": cluster.host}
