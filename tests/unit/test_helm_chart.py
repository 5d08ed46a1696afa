"""The Helm chart: values against values.schema.json, the recipe it ships, standard labels, `helm lint
--strict` and `helm template` through Helm's own library (helm-python-sdk, no binary), and the rendered
manifests against Kubernetes' schemas (kubernetes-validate --strict)."""

from __future__ import annotations

import copy
import json
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


# Three value sets: the defaults; the longest release name Helm allows with every part on; an external MLflow.
VALUE_SETS = {
    "defaults": ("mp", {}),
    "longest release name": ("r" * 53, {"image": {"tag": "1.2.3"}, "mlflow": {"extraEnvFromSecret": "s3-creds"}}),
    "external mlflow": ("modelpress", {"mlflow": {"enabled": False},
                                       "schedule": {"trackingUri": "http://mlflow.ml.svc:5000"}}),
}


def _rendered(release: str, values: dict) -> list[dict]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the test extra) embeds Helm's library")
    out = helm.Chart.load(CHART).render(values, name=release, namespace="ml", is_install=True)
    return [d for path, text in sorted(out.items()) if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]


def test_helm_lint_strict_passes():
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the test extra) embeds Helm's library")
    for _, values in VALUE_SETS.values():
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.34.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert problems == [], problems


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rendered_manifests_pass_kubernetes_validate_strict(name):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (the test extra) checks manifests")
    release, values = VALUE_SETS[name]
    docs = _rendered(release, values)
    assert docs
    for d in docs:
        kv.validate(d, "1.34.0", strict=True)  # raises on any schema violation or unknown field
        assert len(d["metadata"]["name"]) <= 63, d["metadata"]["name"]  # DNS names: the schema does not check
        assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == (["ConfigMap", "Job"] if name == "external mlflow" else ["ConfigMap", "Deployment", "Job",
                                                                              "Service"])
    job = next(d for d in docs if d["kind"] == "Job")
    assert "--cron=0 0 2 * * *" in job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_an_external_mlflow_needs_its_uri():
    values = copy.deepcopy(_values())
    values["mlflow"]["enabled"] = False
    assert _errors(values)  # no trackingUri: the scheduled runs would point at a server that is not there
    values["schedule"]["trackingUri"] = "http://mlflow.ml.svc:5000"
    assert _errors(values) == []
