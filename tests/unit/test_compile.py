"""The compiled pipeline is what a cluster gets: check the spec itself."""

import json
from pathlib import Path

import pytest
import yaml

from modelpress.components.image import IMAGE
from modelpress.pipelines.arguments import parameter_names
from modelpress.pipelines.compile import compile_all, compile_pipeline

STEPS = ["check-registered", "resolve", "validate-data", "nas-worker", "nas-select", "distill", "prune", "deep-compress", "qat", "export-onnx", "quantize", "evaluate",
         "gate", "register", "summarize"]
PER_TARGET = ("qat", "quantize", "evaluate", "gate")


def _work(spec: dict) -> dict:
    """The tasks that run only when a target is left to build (inside the first dsl.If)."""
    return spec["components"]["comp-condition-1"]["dag"]["tasks"]


def _loop(spec: dict, holding: str) -> str:
    """The name of the ParallelFor whose body holds the task `holding` (kfp numbers loops as it meets them)."""
    (name,) = [k for k, v in _work(spec).items() if k.startswith("for-loop-")
               and holding in spec["components"][v["componentRef"]["name"]]["dag"]["tasks"]]
    return name


def _targets_loop(spec: dict) -> str:
    return _loop(spec, "quantize")


def _tasks(spec: dict) -> dict:
    """Every task of the pipeline, the per-target ones (inside the ParallelFor) included."""
    return {**spec["root"]["dag"]["tasks"], **_work(spec),
            **spec["components"][f"comp-{_targets_loop(spec)}"]["dag"]["tasks"]}


def test_pipeline_compiles_and_loads_back(tmp_path: Path):
    from kfp import components

    path = compile_pipeline(tmp_path / "pipeline.yaml")
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "modelpress-compress"
    spec = yaml.safe_load(path.read_text())
    execs = spec["deploymentSpec"]["executors"]
    assert {f"exec-{s}" for s in STEPS} == set(execs)
    for ex in execs.values():
        assert ex["container"]["image"] == IMAGE
        # no pip install at run time: the image carries everything
        assert "pip install" not in " ".join(ex["container"]["command"])
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == set(parameter_names())


def test_each_component_gets_its_own_section_and_nothing_else_of_the_recipe(tmp_path: Path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "pipeline.yaml").read_text())
    tasks = _tasks(spec)

    def params(task: str) -> dict[str, str]:
        """Each input parameter of `task` -> the pipeline parameter it reads (loop items and constants aside)."""
        out = {}
        for name, value in tasks[task]["inputs"].get("parameters", {}).items():
            channel = value.get("componentInputParameter", "")
            out[name] = channel.removeprefix("pipelinechannel--")
        return out

    assert params("prune") == {"config": "prune", "run": "run", "tracking_uri": "tracking_uri"}
    assert params("deep-compress")["config"] == "deep_compress"
    assert params("validate-data") == {"config": "data_checks"}
    assert params("quantize")["config"] == "quantize" and params("evaluate")["config"] == "evaluate"
    assert {params("gate")["gates"], params("gate")["model_checks"]} == {"gates", "model_checks"}
    assert "recipe" not in parameter_names()


def test_no_component_imports_the_pipelines_package():
    root = Path(__file__).parents[2] / "components"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if "modelpress.pipelines" in p.read_text()]
    assert offenders == []


def test_targets_fan_out_and_the_verdicts_fan_in(tmp_path: Path):
    from modelpress.pipelines.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "digits-cpu-targets.yaml")
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", recipe).read_text())
    root = _work(spec)
    loop = _targets_loop(spec)
    # The loop runs over the targets still to build, which the first task lists.
    assert root[loop]["parameterIterator"]["items"] == {
        "inputParameter": "pipelinechannel--check-registered-todo"}
    assert spec["root"]["inputDefinitions"]["parameters"]["targets"]["defaultValue"] == [
        "cpu-x86-int8", "cpu-arm64-int8", "cpu-x86-fp32"]
    # Target-independent steps run once, outside the loop; the per-target ones inside it.
    assert {"resolve", "validate-data", "prune", "distill", "deep-compress", "export-onnx"} <= set(root)
    assert set(PER_TARGET) <= set(spec["components"][f"comp-{loop}"]["dag"]["tasks"])
    assert root["summarize"]["inputs"]["artifacts"]["verdicts"]["taskOutputArtifact"] == {
        "outputArtifactKey": "pipelinechannel--gate-verdict", "producerTask": loop}


def test_an_unchanged_source_is_skipped_inside_the_pipeline(tmp_path: Path):
    """What compile, submit and schedule send: one task checks the registry, everything else waits on its answer."""
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml").read_text())
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"check-registered", "condition-1"}
    assert root["condition-1"]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--check-registered-Output'] == true")
    assert root["check-registered"]["cachingOptions"] == {}  # the registry changes between runs
    check = root["check-registered"]["inputs"]["parameters"]
    assert check["force"] == {"componentInputParameter": "force"}
    assert spec["root"]["inputDefinitions"]["parameters"]["force"]["defaultValue"] is False
    # Every later step uses the version the check pinned, not the alias again.
    assert _work(spec)["resolve"]["inputs"]["artifacts"]["source"]["componentInputArtifact"] == (
        "pipelinechannel--check-registered-source")


def test_register_runs_only_when_gates_pass(tmp_path: Path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml").read_text())
    loop = spec["components"][f"comp-{_targets_loop(spec)}"]["dag"]["tasks"]
    (name,) = [k for k in loop if k.startswith("condition-")]
    assert "gate-Output" in loop[name]["triggerPolicy"]["condition"]
    assert "register" in spec["components"][f"comp-{name}"]["dag"]["tasks"]


def test_caching_off_where_results_must_be_fresh(tmp_path: Path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml").read_text())
    tasks = _tasks(spec)
    assert tasks["resolve"]["cachingOptions"] == {}
    assert tasks["evaluate"]["cachingOptions"] == {}


def test_every_compression_step_waits_for_the_data_checks(tmp_path: Path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml").read_text())
    tasks = _work(spec)
    for name in ("nas-select", "distill", "prune", "deep-compress", "export-onnx", _targets_loop(spec)):
        assert "validate-data" in tasks[name].get("dependentTasks", []), name
    loop = spec["components"][f"comp-{_targets_loop(spec)}"]
    assert loop["inputDefinitions"]["artifacts"]["pipelinechannel--validate-data-validated"]
    assert tasks["prune"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"] == {
        "outputArtifactKey": "validated", "producerTask": "validate-data"}


def test_a_compiled_recipe_is_the_pipelines_default(tmp_path: Path):
    from modelpress.pipelines.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "digits-lenet5-deep-compress.yaml")
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", recipe).read_text())
    defaults = {k: v["defaultValue"] for k, v in spec["root"]["inputDefinitions"]["parameters"].items()
                if "defaultValue" in v}
    assert json.loads(defaults["deep_compress"]) == recipe.deep_compress.model_dump(mode="json")
    assert json.loads(defaults["prune"]) is None  # not in the recipe: its step passes the model through
    assert defaults["targets"] == ["cpu-x86-fp32"]
    assert json.loads(defaults["run"])["config_hash"] == recipe.config_hash()


def test_compile_all_writes_every_component(tmp_path: Path):
    written = compile_all(tmp_path)
    names = {p.stem for p in written}
    assert {"compress", *STEPS} <= names


def test_nas_workers_fan_out_with_parallel_for_and_select_waits_for_all(tmp_path: Path):
    from modelpress.pipelines.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "digits-nas-int8.yaml")
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", recipe).read_text())
    work, loop = _work(spec), _loop(spec, "nas-worker")
    # One worker task per item of the `nas_workers` parameter: the recipe's worker count.
    assert work[loop]["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--nas_workers"}
    assert spec["root"]["inputDefinitions"]["parameters"]["nas_workers"]["defaultValue"] == [0, 1]
    worker = spec["components"][f"comp-{loop}"]["dag"]["tasks"]["nas-worker"]
    assert worker["cachingOptions"] == {}  # the study is the state: a cached worker would do nothing
    assert worker["inputs"]["artifacts"]["source"]["componentInputArtifact"] == "pipelinechannel--check-registered-source"
    # Select runs once every worker is done; distill trains what it chose; then the targets' loop.
    assert loop in work["nas-select"]["dependentTasks"]
    assert work["distill"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "out_model", "producerTask": "nas-select"}
    # Without a nas section, the list is empty: no worker runs and select passes the model through.
    plain = yaml.safe_load(compile_pipeline(tmp_path / "plain.yaml").read_text())
    assert plain["root"]["inputDefinitions"]["parameters"]["nas_workers"]["defaultValue"] == []


def _resources(path) -> dict[str, dict]:
    spec = yaml.safe_load(path.read_text())
    return {k.removeprefix("exec-"): {a: b for a, b in v["container"].get("resources", {}).items()
                                      if a.startswith("resource")}
            for k, v in spec["deploymentSpec"]["executors"].items()}


def test_every_task_gets_requests_and_limits_from_the_recipe(tmp_path):
    from modelpress.pipelines.compile import compile_pipeline
    from modelpress.pipelines.recipe import load_recipe

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("distill: {student: {family: digits-cnn, width: 0.5}}\n"
                           "resources:\n  default: {memory_limit: 3Gi}\n"
                           "  tasks: {distill: {cpu: '4', memory_limit: 16Gi}, evaluate: {cpu_limit: '1'}}\n")
    recipe = load_recipe(recipe_file)
    got = _resources(compile_pipeline(tmp_path / "p.yaml", recipe))
    assert all(r.get("resourceMemoryRequest") for r in got.values()), got  # every task asks for something
    assert got["distill"] == {"resourceCpuRequest": "4", "resourceMemoryRequest": "2Gi",
                              "resourceMemoryLimit": "16Gi"}
    assert got["prune"]["resourceCpuRequest"] == "2" and got["prune"]["resourceMemoryLimit"] == "8Gi"  # training
    assert got["evaluate"] == {"resourceCpuRequest": "500m", "resourceCpuLimit": "1", "resourceMemoryRequest": "1Gi",
                               "resourceMemoryLimit": "3Gi"}
    # Where a task runs never changes what it builds: the variant key stays the same.
    assert recipe.config_hash() == load_recipe(None, distill={"student": {"family": "digits-cnn", "width": 0.5}}) \
        .config_hash()


def test_gpu_targets_evaluate_on_a_gpu_and_a_recipe_can_say_otherwise(tmp_path):
    from modelpress.pipelines.compile import compile_pipeline
    from modelpress.pipelines.recipe import load_recipe

    def accelerators(**recipe) -> dict[str, dict]:
        spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", load_recipe(None, **recipe)).read_text())
        return {k.removeprefix("exec-"): {a: b for a, b in v["container"]["resources"]["accelerator"].items()
                                          if a.startswith("resource")}
                for k, v in spec["deploymentSpec"]["executors"].items()
                if "accelerator" in v["container"].get("resources", {})}

    assert accelerators(targets=["nvidia-cuda-fp16", "nvidia-trt-int8"]) == {
        "evaluate": {"resourceType": "nvidia.com/gpu", "resourceCount": "1"}}  # only where the model runs on it
    assert accelerators(targets=["cpu-x86-int8"]) == {}
    # One fan-out serves every target, so a mixed recipe asks for nothing unless it says so.
    assert accelerators(targets=["cpu-x86-int8", "nvidia-trt-int8"]) == {}
    assert accelerators(targets=["cpu-x86-int8", "nvidia-trt-int8"], resources={
        "tasks": {"evaluate": {"accelerator": "nvidia.com/gpu", "accelerator_count": 2}}}) == {
        "evaluate": {"resourceType": "nvidia.com/gpu", "resourceCount": "2"}}


@pytest.mark.parametrize(("body", "needle"), [
    ("resources: {tasks: {distil: {cpu: '2'}}}\n", "resources.tasks names distil"),
    ("resources: {default: {cpu: two}}\n", "resources.default.cpu"),
    ("resources: {default: {memory: 4GB}}\n", "resources.default.memory"),
    ("resources: {default: {gpu: 1}}\n", "resources.default.gpu: unknown key"),
])
def test_bad_resources_are_refused_before_anything_runs(body, needle, tmp_path):
    from modelpress.errors import ModelpressError
    from modelpress.pipelines.compile import compile_pipeline
    from modelpress.pipelines.recipe import load_recipe

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(body)
    with pytest.raises(ModelpressError, match=needle):
        compile_pipeline(tmp_path / "p.yaml", load_recipe(recipe_file))
