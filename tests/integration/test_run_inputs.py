"""`fetch_run_input` against a throwaway local MLflow store (SQLite + an artifact folder, no server)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag

from modelpress.core.run_inputs import fetch_run_input
from modelpress.errors import ModelpressError

pytestmark = pytest.mark.integration

TRAIN = pd.DataFrame(
    {"alcohol": [13.2, 12.4, 14.1, 11.9], "ash": [2.3, 2.1, 2.6, 1.9], "target": [0, 1, 2, 1]}
)
EVAL = pd.DataFrame({"alcohol": [12.8, 13.7], "ash": [2.0, 2.4], "target": [1, 0]})


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path}/db.sqlite"
    prev = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri exports it; undone at teardown
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "run-inputs", artifact_location=(tmp_path / "artifacts").as_uri()))
    yield MlflowClient(uri)
    mlflow.set_tracking_uri(prev)


def _artifact(tmp_path: Path, df: pd.DataFrame, name: str) -> str:
    """Log `df` as artifact data/<name> of the active run; return its artifact URI."""
    path = tmp_path / "staging" / name
    path.parent.mkdir(exist_ok=True)
    df.to_parquet(path) if name.endswith(".parquet") else df.to_csv(path, index=False)
    mlflow.log_artifact(str(path), "data")
    return mlflow.get_artifact_uri(f"data/{name}")


@pytest.fixture
def source_run(client: MlflowClient, tmp_path: Path) -> str:
    """A run that logged "wine" twice: the training split (Parquet) and the evaluation split (CSV)."""
    with mlflow.start_run() as run:
        train = mlflow.data.from_pandas(TRAIN, source=_artifact(tmp_path, TRAIN, "train.parquet"),
                                        name="wine", targets="target")
        evaluation = mlflow.data.from_pandas(EVAL, source=_artifact(tmp_path, EVAL, "eval.csv"),
                                             name="wine", targets="target")
        mlflow.log_input(train, context="training")
        mlflow.log_input(evaluation, context="evaluation")
    return run.info.run_id


def _one_line_error(**kwargs) -> str:
    with pytest.raises(ModelpressError) as info:
        fetch_run_input(**kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_training_input_from_artifact_uri(client, source_run, tmp_path):
    path, prov = fetch_run_input(client, source_run, tmp_path / "dst", name="wine", context="training")
    assert path.parent.is_relative_to(tmp_path / "dst") and path.name == "train.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), TRAIN)
    assert prov["run_id"] == source_run and prov["name"] == "wine" and prov["context"] == "training"
    assert prov["source_type"] == "local" and "data/train.parquet" in prov["source"]
    assert prov["digest"] == mlflow.data.from_pandas(TRAIN, targets="target").digest


def test_select_by_context_alone(client, source_run, tmp_path):
    path, prov = fetch_run_input(client, source_run, tmp_path / "dst", context="evaluation")
    pd.testing.assert_frame_equal(pd.read_csv(path), EVAL)
    assert prov["context"] == "evaluation"


def test_no_match_names_what_was_found(client, source_run, tmp_path):
    msg = _one_line_error(client=client, run_id=source_run, dst=tmp_path, name="beer")
    assert f"run {source_run} has no dataset input named 'beer'" in msg
    assert "(inputs: wine (training), wine (evaluation))" in msg and "data.run_input.name" in msg
    msg = _one_line_error(client=client, run_id=source_run, dst=tmp_path, name="wine", context="test")
    assert "named 'wine' with context 'test'" in msg


def test_ambiguous_match(client, source_run, tmp_path):
    msg = _one_line_error(client=client, run_id=source_run, dst=tmp_path, name="wine")
    assert f"run {source_run} has 2 dataset inputs named 'wine'" in msg and "data.run_input" in msg


def test_missing_run(client, tmp_path):
    msg = _one_line_error(client=client, run_id="0123456789abcdef0123456789abcdef", dst=tmp_path)
    assert "run 0123456789abcdef0123456789abcdef not found" in msg


def test_run_without_inputs(client, tmp_path):
    with mlflow.start_run() as run:
        pass
    assert "has no dataset inputs" in _one_line_error(client=client, run_id=run.info.run_id, dst=tmp_path)


def test_local_file_source(client, tmp_path):
    raw = tmp_path / "raw" / "wine.csv"
    raw.parent.mkdir()
    TRAIN.to_csv(raw, index=False)
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_pandas(TRAIN, source=str(raw), name="wine"), context="training")
    path, prov = fetch_run_input(client, run.info.run_id, tmp_path / "dst")
    assert path != raw and path.is_relative_to(tmp_path / "dst")  # a copy: later edits to raw don't leak in
    pd.testing.assert_frame_equal(pd.read_csv(path), TRAIN)
    assert prov["source"] == f'{{"uri": "{raw}"}}' and prov["source_type"] == "local"


def test_directory_source_with_one_data_file(client, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    TRAIN.to_parquet(folder / "part-0.parquet")
    (folder / "README.md").write_text("wine, training split\n")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "wine")
        ds = mlflow.data.from_pandas(TRAIN, source=mlflow.get_artifact_uri("wine"), name="wine")
        mlflow.log_input(ds, context="training")
    path, _ = fetch_run_input(client, run.info.run_id, tmp_path / "dst")
    assert path.name == "part-0.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), TRAIN)


def test_runs_uri_source(client, source_run, tmp_path):
    # from_pandas refuses runs:/ and mlflow-artifacts:/ sources (no resolver for those schemes),
    # but a dataset logged by other means can carry one; "local" sources load any artifact URI.
    uri = f"runs:/{source_run}/data/train.parquet"
    entity = Dataset(name="wine-ref", digest="abc123", source_type="local", source=f'{{"uri": "{uri}"}}')
    client.log_inputs(source_run, [DatasetInput(entity, [InputTag("mlflow.data.context", "training")])])
    path, prov = fetch_run_input(client, source_run, tmp_path / "dst", name="wine-ref")
    pd.testing.assert_frame_equal(pd.read_parquet(path), TRAIN)
    assert uri in prov["source"]


def test_code_source_is_not_loadable(client, tmp_path):
    with mlflow.start_run() as run:  # no source: MLflow records the code that built the frame
        mlflow.log_input(mlflow.data.from_pandas(TRAIN, name="wine"), context="training")
    msg = _one_line_error(client=client, run_id=run.info.run_id, dst=tmp_path)
    assert "source type 'code'" in msg and "data.uri" in msg


@pytest.mark.parametrize("source_type", ["delta_table", "some_plugin"])  # known to MLflow / unknown
def test_table_or_unknown_source_is_not_loadable(client, tmp_path, source_type):
    with mlflow.start_run() as run:
        entity = Dataset(name="wine", digest="d1", source_type=source_type, source='{"path": "x"}')
        client.log_inputs(run.info.run_id, [DatasetInput(entity, [])])
    msg = _one_line_error(client=client, run_id=run.info.run_id, dst=tmp_path)
    assert f"source type '{source_type}'" in msg


def test_vanished_source(client, tmp_path):
    raw = tmp_path / "gone.parquet"
    TRAIN.to_parquet(raw)
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_pandas(TRAIN, source=str(raw), name="wine"))
    raw.unlink()
    msg = _one_line_error(client=client, run_id=run.info.run_id, dst=tmp_path / "dst")
    assert "could not download dataset 'wine'" in msg and "No such artifact: 'gone.parquet'" in msg


def test_folder_with_several_data_files(client, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        TRAIN.to_parquet(folder / f"part-{i}.parquet")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "wine")
        mlflow.log_input(mlflow.data.from_pandas(TRAIN, source=mlflow.get_artifact_uri("wine"), name="wine"))
    msg = _one_line_error(client=client, run_id=run.info.run_id, dst=tmp_path / "dst")
    assert "folder with 2 data files (part-0.parquet, part-1.parquet)" in msg
