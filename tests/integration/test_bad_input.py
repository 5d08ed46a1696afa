"""Each bad input: one line naming the problem, a non-zero exit, no traceback, nothing registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def registry_state(client: MlflowClient) -> list[tuple]:
    state = []
    for rm in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{rm.name}'")
        state.append((rm.name, sorted(v.version for v in versions), sorted(rm.aliases.items())))
    return sorted(state)


def assert_refused(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("modelpress: error:"), last
    for needle in needles:
        assert needle in last, last


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "--source", "models:/no-such-model@champion"], ["registered model 'no-such-model' not found"]),
        (["run", "--source", "models:/digits-cnn@no-such-alias"], ["alias 'no-such-alias' is not set", "champion"]),
        (["run", "--target", "tpu-v9-int4"], ["unknown hardware target 'tpu-v9-int4'", "cpu-x86-int8"]),
        (["run", "--target", "cpu-x86-fp32"], ["target cpu-x86-fp32 is fp32 and there is no distill, prune or deep_compress section"]),
    ],
)
def test_bad_cli_input(args, needles, demo_source, server_env, client):
    before = registry_state(client)
    assert_refused(run_cli(args, server_env), *needles)
    assert registry_state(client) == before


def test_config_typo(demo_source, server_env, client, tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("quantize:\n  reduce_rnage: true\n")
    before = registry_state(client)
    assert_refused(run_cli(["run", "--recipe", str(recipe)], server_env), "quantize.reduce_rnage: unknown key")
    assert registry_state(client) == before


def test_corrupt_onnx_source(demo_source, server_env, client, mlflow_server, tmp_path):
    """A registered ONNX source whose file was corrupted in the artifact store."""
    import mlflow
    import onnx
    from onnx import TensorProto, helper

    uri, artifacts_root = mlflow_server
    mlflow.set_tracking_uri(uri)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor("w", TensorProto.FLOAT, [64, 10], [0.01] * 640)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    with mlflow.start_run():
        info = mlflow.onnx.log_model(model, name="model", registered_model_name="corrupt-onnx",
                                     pip_requirements=["onnx"], save_as_external_data=False)
    client.set_model_version_tag("corrupt-onnx", "1", "modelpress.dataset", "sklearn-digits")
    client.set_registered_model_alias("corrupt-onnx", "champion", "1")
    files = [p for p in Path(artifacts_root).rglob("model.onnx") if info.model_id in str(p)]
    assert files, "logged ONNX file not found in the server's artifact store"
    files[0].write_bytes(files[0].read_bytes()[:40] + b"\xff" * 64)

    before = registry_state(client)
    proc = run_cli(["run", "--source", "models:/corrupt-onnx@champion"], server_env)
    assert_refused(proc, "models:/corrupt-onnx@champion", "ONNX file is corrupt")
    assert registry_state(client) == before


def test_unreachable_tracking_server_names_the_uri(server_env):
    env = dict(server_env, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert_refused(run_cli(["run"], env), "http://127.0.0.1:9", "unreachable")
