"""The Helm chart: values against values.schema.json, the recipe it ships, standard labels, and
(where `helm` is installed) lint and render."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelpress"


def _schema():
    return json.loads((CHART / "values.schema.json").read_text())


def _values():
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _errors(values) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(_schema())
    return [".".join(map(str, e.path)) or e.message for e in validator.iter_errors(values)]


def test_values_yaml_meets_its_schema():
    assert _errors(_values()) == []


@pytest.mark.parametrize(("path", "value"), [
    (("schedule", "cron"), "every night"),
    (("schedule", "maxConcurrency"), 0),
    (("schedule", "kfp", "host"), "kubeflow.local"),
    (("mlflow", "port"), 70000),
    (("podSecurityContext", "runAsNonRoot"), False),
    (("image", "pullPolicy"), "Sometimes"),
    (("schedule", "crons"), "0 0 2 * * *"),  # a typo'd key
])
def test_bad_values_are_refused(path, value):
    values = copy.deepcopy(_values())
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _errors(values), path


def test_the_shipped_recipe_and_cron_are_valid_for_modelpress():
    from modelpress.core.config import parse_config
    from modelpress.pipelines.cron import normalize_cron
    from modelpress.pipelines.recipe import Recipe

    values = _values()
    parse_config(Recipe, yaml.safe_load(values["schedule"]["recipe"]), "chart recipe")
    assert normalize_cron(values["schedule"]["cron"]) == "0 0 2 * * *"


def test_chart_metadata_and_labels():
    from modelpress import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == __version__
    assert (CHART / "templates" / "NOTES.txt").is_file()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    for label in ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                  "app.kubernetes.io/version", "app.kubernetes.io/managed-by"):
        assert label in helpers
    for manifest in (CHART / "templates").glob("*.yaml"):
        assert 'include "modelpress.labels"' in manifest.read_text(), manifest.name


@pytest.fixture()
def helm():
    path = shutil.which("helm")
    if path is None:
        pytest.skip("helm is not installed here; charts/modelpress/README.md says how to get it")
    return path


def test_helm_lint_and_template(helm):
    lint = subprocess.run([helm, "lint", str(CHART)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run([helm, "template", "mp", str(CHART)], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Job", "Service"]
    for d in docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    job = next(d for d in docs if d["kind"] == "Job")
    assert "--cron=0 0 2 * * *" in job["spec"]["template"]["spec"]["containers"][0]["args"]
