"""Where the example scripts log: an experiment of their own, its artifacts beside a local SQLite store.

With a tracking server, the server decides where artifacts go. With a local SQLite file, MLflow's
default is ./mlruns in whatever folder you run from; these examples keep them beside the database
instead, as modelpress does with its own runs, so the store is one folder you can move or delete.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

EXPERIMENT = "byom-examples"


def use_experiment() -> None:
    """Log the following runs to EXPERIMENT, creating it (artifacts beside a SQLite store) when absent."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        folder.mkdir(parents=True, exist_ok=True)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            mlflow.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts" / EXPERIMENT).as_uri())
    mlflow.set_experiment(EXPERIMENT)
