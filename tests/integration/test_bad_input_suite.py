"""A hundred-odd bad inputs, each refused in one line with exit 2, the registry left exactly as it was.

The CLI runs in this process (`modelpress.cli.main`), against the session's real `mlflow server`
holding the demo source: a subprocess per case would spend minutes on interpreter start-up alone.
An exception escaping `main` (a traceback for a user) fails the case. `test_bad_input.py` keeps the
cases that need a separate process or a corrupted artifact store.
"""

from __future__ import annotations

import json

import pytest

from modelpress.cli import main

pytestmark = pytest.mark.integration


def snapshot(client) -> list:
    """Models, their tags and aliases, and every version's tags and status."""
    state = []
    for rm in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{rm.name}'")
        state.append((rm.name, sorted(rm.tags.items()), sorted(rm.aliases.items()),
                      sorted((v.version, v.status, sorted(v.tags.items())) for v in versions)))
    return sorted(state)


@pytest.fixture
def refused(demo_source, server_env, client, monkeypatch, capsys, tmp_path):
    """Runs the CLI in-process; asserts one line, exit 2, no registry change; returns that line."""
    for key in ("MLFLOW_TRACKING_URI", "MODELPRESS_HOME"):
        monkeypatch.setenv(key, server_env[key])
    monkeypatch.chdir(tmp_path)

    def check(args: list[str], env: dict[str, str] | None = None) -> str:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        before = snapshot(client)
        capsys.readouterr()
        try:
            code = main(args)
        except SystemExit as exc:  # argparse: usage, then one error line
            code = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (code, err[-5:])
        assert err and "Traceback" not in "\n".join(err)
        assert err[-1].startswith(("modelpress: error:", "modelpress ")) and "error:" in err[-1], err[-3:]
        assert snapshot(client) == before
        return err[-1]

    return check


# ---------------------------------------------------------------- recipes: (YAML body, what the line names)
RECIPES = {
    "empty file": ("", "is empty"),
    "only a comment": ("# nothing\n", "is empty"),
    "a list at the top": ("- quantize\n", "must be a mapping"),
    "a scalar at the top": ("quantize\n", "must be a mapping"),
    "broken YAML": ("quantize: {mode: static\n", "not valid YAML"),
    "tab indentation": ("quantize:\n\tmode: static\n", "not valid YAML"),
    "duplicate section": ("quantize: {mode: static}\nquantize: {mode: dynamic}\n", "'quantize' is given twice"),
    "duplicate nested key": ("quantize:\n  mode: static\n  mode: dynamic\n", "'mode' is given twice"),
    "unknown section": ("quantise: {mode: static}\n", "quantise: unknown key"),
    "quantize typo": ("quantize: {reduce_rnage: true}\n", "quantize.reduce_rnage: unknown key"),
    "quantize mode": ("quantize: {mode: int3}\n", "quantize.mode"),
    "quantize not a mapping": ("quantize: 3\n", "quantize"),
    "calibration samples 0": ("quantize: {calibration_samples: 0}\n", "quantize.calibration_samples"),
    "evaluate batch 0": ("evaluate: {batch_sizes: [0]}\n", "evaluate.batch_sizes.0"),
    "evaluate batch negative": ("evaluate: {batch_sizes: [1, -64]}\n", "evaluate.batch_sizes.1"),
    "evaluate no batches": ("evaluate: {batch_sizes: []}\n", "evaluate.batch_sizes"),
    "evaluate batch text": ("evaluate: {batch_sizes: [big]}\n", "evaluate.batch_sizes.0"),
    "evaluate runs 0": ("evaluate: {latency_runs: 0}\n", "evaluate.latency_runs"),
    "evaluate split": ("evaluate: {split: holdout}\n", "evaluate.split"),
    "evaluate threads 0": ("evaluate: {threads: 0}\n", "evaluate.threads"),
    "evaluate typo": ("evaluate: {warmup: 3}\n", "evaluate.warmup: unknown key"),
    "no targets": ("targets: []\n", "targets"),
    "unknown target": ("targets: [tpu-v9-int4]\n", "tpu-v9-int4"),
    "target twice": ("targets: [cpu-x86-int8, cpu-x86-int8]\n", "twice"),
    "source not a URI": ("source: digits-cnn\n", "not a registry model URI"),
    "source with a quote": ("source: \"models:/it's@champion\"\n", "holds"),
    "source path": ("source: /tmp/model.onnx\n", "not a registry model URI"),
    "gate NaN lower": ("gates:\n  - {metric: accuracy, value: {lower: .nan}}\n", "finite number"),
    "gate infinite upper": ("gates:\n  - {metric: size_ratio, value: {upper: .inf}}\n", "finite number"),
    "gate on unknown metric": ("gates:\n  - {metric: acuracy, value: {lower: 0.9}}\n", "acuracy"),
    "gate typo": ("gates:\n  - {metric: accuracy, value: {lowr: 0.9}}\n", "lowr: unknown key"),
    "gate without a bound": ("gates:\n  - {metric: accuracy}\n", "accuracy"),
    "gate lower above upper": ("gates:\n  - {metric: accuracy, value: {lower: 0.9, upper: 0.5}}\n",
                               "lower 0.9 is above upper 0.5"),
    "gate direction": ("gates:\n  - {metric: accuracy, direction: up, change: {max_degradation: 0.01}}\n",
                       "direction"),
    "gates not a list": ("gates: accuracy\n", "gates"),
    "alias latest": ("variant: {alias: latest}\n", "reserved"),
    "alias Latest": ("variant: {alias: Latest}\n", "reserved"),
    "alias v3": ("variant: {alias: v3}\n", "reserved"),
    "alias with a space": ("variant: {alias: my alias}\n", "not usable"),
    "alias with a quote": ("variant: {alias: \"it's\"}\n", "not usable"),
    "alias empty": ("variant: {alias: ''}\n", "not usable"),
    "alias too long": (f"variant: {{alias: {'a' * 70}}}\n", "not usable"),
    "variant typo": ("variant: {alais: candidate}\n", "alais: unknown key"),
    "prune ratio above 1": ("prune: {method: structured, ratio: 1.5}\n", "prune.ratio"),
    "prune ratio negative": ("prune: {method: structured, ratio: -0.1}\n", "prune.ratio"),
    "prune method": ("prune: {method: random, ratio: 0.5}\n", "prune.method"),
    "prune typo": ("prune: {method: structured, ratoi: 0.5}\n", "ratoi: unknown key"),
    "prune NaN ratio": ("prune: {method: structured, ratio: .nan}\n", "finite number"),
    "distill no student": ("distill: {temperature: 4}\n", "student"),
    "distill temperature 0": ("distill: {student: {family: digits-cnn, width: 0.5}, temperature: 0}\n",
                              "temperature"),
    "distill alpha above 1": ("distill: {student: {family: digits-cnn, width: 0.5}, alpha: 2}\n", "alpha"),
    "distill epochs 0": ("distill: {student: {family: digits-cnn, width: 0.5}, train: {epochs: 0}}\n",
                         "distill.train.epochs"),
    "nas without distill": ("nas: {trials: 4}\n", "nas"),
    "nas budget 0": ("nas: {trials: 0}\ndistill: {student: {nas: true}}\n", "nas.trials"),
    "nas empty widths": ("nas: {space: {widths: []}}\ndistill: {student: {nas: true}}\n", "space.widths"),
    "nas repeated width": ("nas: {space: {widths: [4, 4]}}\ndistill: {student: {nas: true}}\n", "twice"),
    "nas depth inverted": ("nas: {space: {depth: {min: 3, max: 1}}}\ndistill: {student: {nas: true}}\n",
                           "depth min 3 is above max 1"),
    "nas constraint metric": ("nas: {constraints: [{metric: flops, upper: 1}]}\ndistill: {student: {nas: true}}\n",
                              "constraints.0.metric"),
    "nas constraint unbounded": ("nas: {constraints: [{metric: params}]}\ndistill: {student: {nas: true}}\n",
                                 "set lower, upper or both"),
    "nas sampler": ("nas: {sampler: cmaes}\ndistill: {student: {nas: true}}\n", "nas.sampler"),
    "nas workers 0": ("nas: {workers: 0}\ndistill: {student: {nas: true}}\n", "nas.workers"),
    "nas storage not a database": ("nas: {storage: /tmp/study.db}\ndistill: {student: {nas: true}}\n", "storage"),
    "deep compress on int8": ("deep_compress: {}\n", "deep_compress"),
    "data typo": ("data: {lable: y}\n", "lable: unknown key"),
    "task kind": ("task: {kind: ranking}\n", "task.kind"),
    "objective typo": ("objective: speed\n", "objective"),
    "objectives that disagree": ("objective: size\nquantize: {tune: {objective: latency}}\n",
                                 "objective size and quantize.tune.objective latency disagree"),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_bad_recipe_is_refused_at_load(name, refused, tmp_path):
    body, needle = RECIPES[name]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(body)
    for command in (["run", "--recipe", str(recipe)], ["compile", "--recipe", str(recipe), "-o", str(tmp_path / "p")]):
        line = refused(command)
        assert needle in line, (name, line)


# ---------------------------------------------------------------- the command line: (args, what the line names)
CLI = {
    "no command": ([], "the following arguments are required"),
    "unknown command": (["compres"], "invalid choice"),
    "run unknown flag": (["run", "--recipie", "r.yaml"], "unrecognized arguments"),
    "run missing recipe file": (["run", "--recipe", "nowhere.yaml"], "not found"),
    "run unknown target": (["run", "--target", "tpu-v9-int4"], "unknown hardware target 'tpu-v9-int4'"),
    "run unknown objective": (["run", "--objective", "speed"], "invalid choice: 'speed'"),
    "run fp32 target alone": (["run", "--target", "cpu-x86-fp32"], "fp32"),
    "run source not a URI": (["run", "--source", "digits-cnn"], "not a registry model URI"),
    "run source runs URI": (["run", "--source", "runs:/abc/model"], "not a registry model URI"),
    "run source no alias": (["run", "--source", "models:/digits-cnn@"], "not a registry model URI"),
    "run source bad version": (["run", "--source", "models:/digits-cnn/one"], "not a registry model URI"),
    "run source quote": (["run", "--source", "models:/digits'cnn@champion"], "holds"),
    "run source backtick": (["run", "--source", "models:/digits`cnn@champion"], "holds"),
    "run unknown model": (["run", "--source", "models:/no-such-model@champion"], "'no-such-model' not found"),
    "run unknown alias": (["run", "--source", "models:/digits-cnn@no-such-alias"], "'no-such-alias' is not set"),
    "run missing version": (["run", "--source", "models:/digits-cnn/999"], "999"),
    "run missing data file": (["run", "--data", "nowhere.parquet"], "nowhere.parquet"),
    "variants quote": (["variants", "it's"], "holds"),
    "variants double quote": (["variants", 'say "hi"'], "holds"),
    "variants backslash": (["variants", "a\\b"], "holds"),
    "variants colon": (["variants", "a:b"], "holds"),
    "variants empty": (["variants", ""], "empty"),
    "variants spaces": (["variants", " digits-cnn"], "space"),
    "variants control character": (["variants", "a\tb"], "holds"),
    "lineage not a URI": (["lineage", "digits-cnn.cpu-x86-int8"], "not a registry model URI"),
    "lineage unknown variant": (["lineage", "models:/nothing.cpu-x86-int8/1"], "nothing.cpu-x86-int8"),
    "lineage quote": (["lineage", "models:/a'b.cpu-x86-int8/1"], "holds"),
    "promote no version": (["promote", "models:/digits-cnn.cpu-x86-int8@candidate"], "needs a version"),
    "promote quote": (["promote", "models:/a'b.cpu-x86-int8/1"], "holds"),
    "promote unknown model": (["promote", "models:/nothing.cpu-x86-int8/1"], "nothing.cpu-x86-int8"),
    "promote the source": (["promote", "models:/digits-cnn/1"], "not a modelpress variant"),
    "promote alias latest": (["promote", "models:/digits-cnn/1", "--alias", "latest"], "reserved"),
    "promote alias v2": (["promote", "models:/digits-cnn/1", "--alias", "v2"], "reserved"),
    "promote alias with a space": (["promote", "models:/digits-cnn/1", "--alias", "a b"], "not usable"),
    "rollback unknown model": (["rollback", "nothing.cpu-x86-int8"], "'nothing.cpu-x86-int8' not found"),
    "rollback quote": (["rollback", 'a"b.cpu-x86-int8'], "holds"),
    "rollback alias latest": (["rollback", "digits-cnn", "--alias", "latest"], "reserved"),
    "rollback never moved": (["rollback", "digits-cnn", "--alias", "production"], "no recorded move"),
    "history unknown model": (["history", "nothing.cpu-x86-int8"], "'nothing.cpu-x86-int8' not found"),
    "history quote": (["history", "it's.cpu-x86-int8"], "holds"),
    "history alias v1": (["history", "digits-cnn", "--alias", "v1"], "reserved"),
    "train-demo quote": (["train-demo", "--name", "bad'name"], "holds"),
    "train-demo slash": (["train-demo", "--name", "a/b"], "holds"),
    "train-demo alias latest": (["train-demo", "--name", "fine", "--alias", "latest"], "reserved"),
    "train-demo alias v7": (["train-demo", "--alias", "v7"], "reserved"),
    "train-demo architecture": (["train-demo", "--architecture", "resnet"], "invalid choice"),
    "schedule bad cron": (["schedule", "--cron", "every night", "--host", "http://127.0.0.1:9"], "cron"),
    "schedule concurrency": (["schedule", "--cron", "0 0 * * *", "--max-concurrency", "0"], "invalid choice"),
    "submit no host": (["submit"], "host"),
    "submit local store": (["submit", "--host", "http://127.0.0.1:9", "--token", "t", "--tracking-uri", "sqlite:///x.db"],
                           "MLflow server URI"),
    "metrics missing recipe": (["metrics", "--recipe", "nowhere.yaml"], "not found"),
}


@pytest.mark.parametrize("name", list(CLI))
def test_bad_command_line_input_is_refused(name, refused, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    args, needle = CLI[name]
    line = refused(args)
    assert needle in line, (name, line)


def test_compile_refuses_a_file_where_a_folder_goes_and_the_reverse(refused, tmp_path):
    (tmp_path / "taken.yaml").write_text("x")
    assert "is a file" in refused(["compile", "--all", str(tmp_path / "taken.yaml")])
    (tmp_path / "folder").mkdir()
    assert "is a folder" in refused(["compile", "-o", str(tmp_path / "folder")])
    assert (tmp_path / "taken.yaml").read_text() == "x"


# ---------------------------------------------------------------- stores and URIs: (environment, what the line names)
STORES = {
    "unknown scheme": ({"MLFLOW_TRACKING_URI": "gopher://mlflow"}, "unsupported scheme 'gopher'"),
    "no scheme": ({"MLFLOW_TRACKING_URI": "mlflow.internal"}, "unsupported scheme"),
    "file scheme": ({"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}, "unsupported scheme 'file'"),
    "server down": ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "unreachable"),
    "postgres down": ({"MLFLOW_TRACKING_URI": "postgresql://postgres@127.0.0.1:9/mlflow"}, "unreachable"),
    "mysql down": ({"MLFLOW_TRACKING_URI": "mysql://root@127.0.0.1:9/mlflow"}, "unreachable"),
    "postgres bad port": ({"MLFLOW_TRACKING_URI": "postgresql://postgres@127.0.0.1:port/db"}, "does not parse"),
    "sqlite in memory": ({"MLFLOW_TRACKING_URI": "sqlite:///:memory:"}, "needs a file path"),
    "sqlite relative": ({"MLFLOW_TRACKING_URI": "sqlite://mlflow.db"}, "needs a file path"),
    "sqlite unwritable": ({"MLFLOW_TRACKING_URI": "sqlite:////proc/modelpress/mlflow.db"}, "cannot create"),
}


@pytest.mark.parametrize("name", list(STORES))
@pytest.mark.parametrize("command", [["variants", "digits-cnn"], ["run"]])
def test_a_bad_store_is_one_line_naming_it(name, command, refused):
    env, needle = STORES[name]
    assert needle in refused(command, env)


def test_home_that_is_a_file_is_refused(refused, tmp_path):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    env = {"MODELPRESS_HOME": str(home), "MLFLOW_TRACKING_URI": ""}
    assert "is a file, not a folder" in refused(["run"], env)
    assert "is a file, not a folder" in refused(["demo"], env)
    assert home.read_text() == "not a folder"


def test_the_suite_holds_a_hundred_cases():
    assert len(RECIPES) * 2 + len(CLI) + len(STORES) * 2 + 2 + 2 >= 100
    json.dumps(RECIPES)  # plain data: the cases read as a table
