"""Every list of techniques is derived from the registry: adding one is its folder plus one registration line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelpress.core import technique


@pytest.fixture
def toy():
    technique.register("toy", "tests.unit.toy_technique.technique")  # the one line
    yield
    technique.unregister("toy")


def test_a_registered_technique_gets_a_recipe_section(toy):
    from modelpress.errors import ModelpressError
    from modelpress.pipelines.recipe import load_recipe, recipe_model

    schema = recipe_model().model_json_schema()
    assert "toy" in schema["properties"]
    recipe = load_recipe(toy={"decimals": 3}, target="cpu-x86-fp32")
    assert recipe.toy.decimals == 3
    with pytest.raises(ModelpressError, match="toy.decimal: unknown key"):
        load_recipe(toy={"decimal": 3})
    with pytest.raises(ModelpressError, match="toy.decimals"):
        load_recipe(toy={"decimals": 99})


def test_its_metrics_chain_and_needs_are_derived(toy):
    from modelpress.pipelines.metrics import produced_metrics
    from modelpress.pipelines.recipe import load_recipe

    recipe = load_recipe(toy={}, target="cpu-x86-fp32")  # an fp32 target: toy is what changes the model
    assert "toy_weights_changed" in produced_metrics(recipe)
    assert recipe.chain() == ["toy", "export_onnx"]
    assert recipe.needs_torch_source() == ["toy"] and recipe.needs_labels() == ["toy"]
    gated = load_recipe(toy={}, target="cpu-x86-fp32",
                        gates=[{"metric": "toy_weights_changed", "value": {"lower": 1}}])
    assert gated.gates[0].metric == "toy_weights_changed"
    assert load_recipe().toy is None  # a recipe without the section: its step passes the model through
    from modelpress.pipelines.resources import ResourcesConfig, training_tasks

    # It trains a torch model, so its task gets the training resources; the built-in list is derived the same way.
    assert training_tasks() == {"distill", "prune", "qat", "deep-compress", "nas-worker", "toy"}
    assert ResourcesConfig().for_task("toy").cpu == "2" and ResourcesConfig().for_task("quantize").cpu == "500m"


def test_it_appears_in_the_compiled_pipeline(toy, tmp_path: Path):
    from modelpress.pipelines.compile import compile_pipeline
    from modelpress.pipelines.recipe import load_recipe

    recipe = load_recipe(toy={"decimals": 1}, prune={"method": "structured", "ratio": 0.5})
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", recipe).read_text())
    root = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert "toy" in root and "exec-toy" in spec["deploymentSpec"]["executors"]
    # After the built-in target-independent steps, before the per-target loop.
    assert root["toy"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "out_model", "producerTask": "deep-compress"}
    (loop,) = [k for k in root if k.startswith("for-loop-") and "pipelinechannel--toy-out_model" in
               root[k]["inputs"].get("artifacts", {})]
    assert "quantize" in spec["components"][f"comp-{loop}"]["dag"]["tasks"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert json.loads(params["toy"]["defaultValue"]) == {"decimals": 1}
    assert root["toy"]["inputs"]["parameters"]["config"] == {"componentInputParameter": "pipelinechannel--toy"}


def test_without_the_line_there_is_no_toy():
    from modelpress.errors import ModelpressError
    from modelpress.pipelines.recipe import load_recipe

    assert "toy" not in technique.known_techniques()
    with pytest.raises(ModelpressError, match="toy: unknown key"):
        load_recipe(toy={})
