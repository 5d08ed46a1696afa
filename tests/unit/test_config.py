import pytest
from pydantic import ValidationError

from modelpress.core.hardware import known_targets, parse_target
from modelpress.errors import ModelpressError
from modelpress.pipelines.recipe import Recipe, load_recipe


def test_targets_parse_canonically():
    assert parse_target(" CPU-x86-INT8 ").name == "cpu-x86-int8"
    t = parse_target("nvidia-trt-int8")
    assert t.provider == "TensorrtExecutionProvider" and t.precision == "int8"
    assert {"cpu-x86-int8", "cpu-arm64-int8", "nvidia-cuda-fp16", "nvidia-trt-int8"} <= set(known_targets())


def test_unknown_target_lists_known_ones():
    with pytest.raises(ModelpressError) as exc:
        parse_target("tpu-v9-int4")
    msg = str(exc.value)
    assert "unknown hardware target 'tpu-v9-int4'" in msg and "cpu-x86-int8" in msg
    assert "\n" not in msg


def test_recipe_defaults():
    r = load_recipe()
    assert r.source == "models:/digits-cnn@champion" and r.targets == ("cpu-x86-int8",)
    assert r.gates is None and r.task.kind == "auto"  # each task brings its own default gates
    g = r.active_gates("classification")[0]
    assert g.metric == "accuracy" and g.change.max_degradation == 0.01
    g = r.active_gates("regression")[0]
    assert (g.metric, g.direction, g.change.max_relative_degradation) == ("rmse", "lower_is_better", 0.05)
    g = r.active_gates("embedding")[0]
    assert (g.metric, g.value.lower) == ("cosine_mean", 0.98)
    # objective latency (the default) on a CPU INT8 target: not slower than the source at batch 64
    assert r.objective == "latency"
    assert {r.active_gates(task)[-1].metric for task in ("classification", "regression", "embedding")} == {
        "latency_ratio_b64"}


def test_recipe_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("quantize:\n  per_chanel: true\n")
    with pytest.raises(ModelpressError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert "quantize.per_chanel: unknown key" in msg and str(path) in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("override", "needle"),
    [({"target": "gpu-foo"}, "unknown hardware target"), ({"source": "digits-cnn"}, "not a registry model URI")],
)
def test_recipe_bad_values(override, needle):
    with pytest.raises(ModelpressError, match=needle):
        load_recipe(**override)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ModelpressError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_config_hash_tracks_what_shapes_the_variant():
    base = Recipe()
    assert base.config_hash() == Recipe().config_hash()
    assert base.config_hash() == Recipe(target="cpu-arm64-int8").config_hash()  # target is its own key part
    assert base.config_hash() != Recipe(quantize={"per_channel": True}).config_hash()
    assert base.config_hash() == Recipe(evaluate={"latency_runs": 10}).config_hash()


def test_recipe_is_frozen():
    with pytest.raises(ValidationError):
        Recipe().targets = ("cpu-arm64-int8",)  # type: ignore[misc]


def test_shipped_recipes_parse():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        load_recipe(path)
