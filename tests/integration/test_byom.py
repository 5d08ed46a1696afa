"""Bring your own model and data: the README's commands as written, then each bad input refused.

Models and data here are logged the way a user would (examples/byom/, plain MLflow calls):
ONNX with external weights and dynamic axes, data as Parquet and CSV run artifacts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, run_readme_script
from tests.integration.test_bad_input import assert_refused, registry_state

pytestmark = [pytest.mark.integration, pytest.mark.long]
SECTION = "## Bring your own model and data"


def readme_commands(section: str = SECTION) -> str:
    """The bash blocks of one README section, as one script."""
    text = (REPO / "README.md").read_text()
    body = text[text.index(section) + len(section):]
    body = body[: body.index("\n## ")]
    return "\n".join(re.findall(r"```bash\n(.*?)```", body, re.S))


@pytest.fixture(autouse=True)
def _mlflow_on_the_test_server(mlflow_server):
    """mlflow.artifacts calls below resolve runs:/ and models:/ against the test server."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server[0])


@pytest.fixture(scope="module")
def byom(server_env, tmp_path_factory):
    """Run the README section's commands once (they register three sources and four variants)."""
    script = readme_commands()
    assert "modelpress run" in script
    return run_readme_script(script, server_env, tmp_path_factory.mktemp("byom"))


def _versions(client, name: str) -> list:
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def _metric(mv, key: str) -> float:
    return float(mv.tags[f"modelpress.metric.{key}"])


def test_readme_commands_register_a_variant_per_model(byom, client):
    wine = _versions(client, "wine-mlp.cpu-x86-int8")
    modes = [json.loads(v.tags["modelpress.note.quantize"])["settings"]["mode"] for v in wine]
    assert modes == ["static", "dynamic"]
    assert [v.description.count(f"Quantized: {mode} int8") for v, mode in zip(wine, modes)] == [1, 1]
    for v in wine:
        data = json.loads(v.tags["modelpress.note.data"])
        assert data["task"] == "classification" and data["data"]["uri"].startswith("runs:/")
        assert data["data"]["split"] == {"method": "column split"} and data["data"]["label"] == "target"
        assert _metric(v, "accuracy_delta") >= -0.01

    (diabetes,) = _versions(client, "diabetes-mlp.cpu-x86-int8")
    assert json.loads(diabetes.tags["modelpress.note.data"])["task"] == "regression"
    assert _metric(diabetes, "rmse") <= 1.02 * _metric(diabetes, "source_rmse")

    (minilm,) = _versions(client, "minilm.cpu-x86-int8")
    data = json.loads(minilm.tags["modelpress.note.data"])
    assert (data["task"], data["output"], data["pooling"]) == ("embedding", "last_hidden_state", "mean")
    assert _metric(minilm, "size_ratio") <= 0.30
    assert _metric(minilm, "cosine_mean") >= 0.98
    assert json.loads(minilm.tags["modelpress.note.quantize"])["quantized_by_op"]["MatMulInteger"] == 36
    assert "cosine" in byom.stdout and "models:/minilm.cpu-x86-int8/1" in byom.stdout
    # The source was logged with mlflow.onnx.log_model's defaults: its weights lie in an external file.
    import mlflow

    source = client.get_model_version("minilm", "1")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/minilm/{source.version}"))
    assert any(p.suffix == ".data" for p in local.iterdir())


def _data_file(client, model: str, name: str, dst: Path) -> Path:
    import mlflow

    run_id = client.get_model_version(model, "1").run_id
    # The server named outright: module fixtures run before the autouse one above sets the global URI.
    return Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/data/{name}", dst_path=str(dst),
                                                    tracking_uri=client.tracking_uri))


@pytest.fixture(scope="module")
def bad_data(byom, client, tmp_path_factory):
    """Data files each broken one way, beside the good ones."""
    import numpy as np
    import pandas as pd

    tmp = tmp_path_factory.mktemp("bad-data")
    sentences = pd.read_parquet(_data_file(client, "minilm", "sentences.parquet", tmp))
    wine_run = client.get_model_version("wine-mlp", "1").run_id
    files = {"wine": f"runs:/{wine_run}/data/wine.parquet", "missing_artifact": f"runs:/{wine_run}/data/nope.parquet"}
    broken = {
        "float_ids": sentences.assign(input_ids=[np.asarray(v, dtype=float) + 0.5 for v in sentences.input_ids]),
        "no_mask": sentences.drop(columns=["attention_mask"]),
        "no_val": sentences[sentences.split != "val"],
        "oov": sentences.assign(input_ids=[np.where(np.arange(len(v)) == 1, 40000, v) if i == 100 else v
                                           for i, v in enumerate(sentences.input_ids)]),
    }
    for key, frame in broken.items():
        frame.to_parquet(tmp / f"{key}.parquet")
        files[key] = str(tmp / f"{key}.parquet")
    (tmp / "label.yaml").write_text("data: {label: quality}\n")
    (tmp / "accuracy.yaml").write_text("source: models:/minilm@champion\nquantize: {mode: dynamic}\n"
                                       "gates: [{metric: accuracy, change: {max_degradation: 0.01}}]\n")
    files |= {"label_recipe": str(tmp / "label.yaml"), "accuracy_recipe": str(tmp / "accuracy.yaml"),
              "missing_file": str(tmp / "nope.parquet")}
    return files


MINILM = ["--recipe", "recipes/minilm-dynamic-int8.yaml"]
WINE = ["--source", "models:/wine-mlp@champion"]


@pytest.mark.parametrize(("args", "needles"), [
    (WINE + ["--data", "{missing_artifact}"], ["resolve: data runs:/", "nope.parquet could not be read"]),
    (WINE + ["--data", "{missing_file}"], ["data file", "nope.parquet not found"]),
    (WINE + ["--data", "{wine}", "--recipe", "{label_recipe}"], ["data.label 'quality' is not a column"]),
    (MINILM + ["--data", "{no_mask}"], ["model input 'attention_mask' is not a column of the data"]),
    (MINILM + ["--data", "{wine}"], ["model input 'input_ids' is not a column of the data"]),
    (MINILM + ["--data", "{float_ids}"], ["dtype mismatch: data column 'input_ids' holds float64",
                                          "takes int64"]),
    (MINILM + ["--data", "{no_val}"], ["the val split of the data is empty"]),
    (["--recipe", "{accuracy_recipe}", "--data", "{no_mask}"], ["model input 'attention_mask'"]),
    (["--recipe", "{accuracy_recipe}", "--data", "{oov}"],
     ["gate on 'accuracy' cannot be measured: this run's task is embedding (the data has no labels)"]),
    (MINILM + ["--data", "{oov}", "--force"], ["validate_data: data checks failed",
                                                "expect_column_values_to_be_between(input_ids.out_of_range)"]),
], ids=["missing-artifact", "missing-file", "missing-label-column", "input-not-provided", "wrong-data",
        "dtype-mismatch", "empty-split", "first-problem-first", "gate-without-labels", "out-of-vocabulary"])
def test_bad_data_is_refused_in_one_line(args, needles, bad_data, server_env, client):
    before = registry_state(client)
    assert_refused(run_cli(["run", *[a.format(**bad_data) for a in args]], server_env), *needles)
    assert registry_state(client) == before


def test_data_logged_as_a_run_input(byom, client, server_env, tmp_path):
    """A dataset recorded with mlflow.log_input names the data; the variant records which one."""
    import mlflow
    import pandas as pd

    path = _data_file(client, "wine-mlp", "wine.parquet", tmp_path)
    frame = pd.read_parquet(path)
    with mlflow.start_run(run_name="wine evaluation data") as run:
        mlflow.log_input(mlflow.data.from_pandas(frame, source=str(path), name="wine-eval", targets="target"),
                         context="evaluation")
    recipe = tmp_path / "run-input.yaml"
    recipe.write_text(f"source: models:/wine-mlp@champion\n"
                      f"data: {{run_input: {{run_id: {run.info.run_id}, context: evaluation}}}}\n")
    proc = run_cli(["run", "--recipe", str(recipe)], server_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    origin = json.loads(_versions(client, "wine-mlp.cpu-x86-int8")[-1].tags["modelpress.note.data"])["data"]
    assert (origin["run_input"]["name"], origin["run_input"]["context"]) == ("wine-eval", "evaluation")
    assert origin["split"] == {"method": "column split"}
