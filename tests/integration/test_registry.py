"""The registry under concurrency (PostgreSQL behind `mlflow server`, and a fresh SQLite store),
a registration killed half-way, promotion and rollback, and the read-back commands."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, fresh_postgres_database, run_cli, running_mlflow_server

pytestmark = pytest.mark.integration

TARGETS = ("cpu-x86-int8", "cpu-arm64-int8")
HASHES = ("aaaa000000000001", "bbbb000000000002")
CLIENTS = 8  # every (target, config) pair twice: version numbering and idempotency race at once


@pytest.fixture(scope="module")
def variant_model(tmp_path_factory) -> Path:
    """A small ONNX model folder to register as every variant."""
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.core import artifacts
    from modelpress.models.zoo import PRESETS, build_model

    tmp = tmp_path_factory.mktemp("variant")
    torch_dir = artifacts.save_torch(tmp / "torch", build_model(PRESETS["digits-cnn"], seed=0), PRESETS["digits-cnn"],
                                     artifacts.TensorSpec(shape=(1, 8, 8)), dataset="sklearn-digits")
    return export_onnx(torch_dir, tmp / "onnx")


def _register_source(uri: str, name: str, tmp: Path):
    from modelpress.core import artifacts
    from modelpress.models.zoo import PRESETS, build_model
    from modelpress.registry.source import register_source
    from modelpress.registry.store import connect

    client = connect(uri)  # creates the experiment (and a fresh SQLite store's schema) once, before the clients
    model_dir = artifacts.save_torch(tmp / "src", build_model(PRESETS["digits-cnn"], seed=1), PRESETS["digits-cnn"],
                                     artifacts.TensorSpec(shape=(1, 8, 8)), dataset="sklearn-digits")
    return client, register_source(client, name, model_dir, "champion", metrics={}, description="concurrency source")


def _race(uri: str, source, model_dir: Path, tmp: Path, env: dict[str, str] | None = None) -> list[dict]:
    go = tmp / f"go-{uuid.uuid4().hex}"
    jobs = list(itertools.product(TARGETS, HASHES)) * (CLIENTS // (len(TARGETS) * len(HASHES)))
    src = json.dumps(dataclasses.asdict(source))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.integration.registry_worker", uri, src, str(model_dir), t, h,
                               str(go)], cwd=REPO, env=env or dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for t, h in jobs]
    import time

    time.sleep(8)  # let every client import mlflow and connect before the start signal
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _check_store(client, source_name: str, results: list[dict]) -> None:
    from modelpress.registry import tags as T
    from modelpress.registry.readback import list_variants
    from modelpress.registry.variants import LINEAGE, model_versions

    for target in TARGETS:
        name = f"{source_name}.{target}"
        versions = model_versions(client, name)
        keys = [mv.tags[T.KEY] for mv in versions]
        assert len(versions) == len(HASHES) and len(set(keys)) == len(HASHES), [v.tags for v in versions]
        for mv in versions:  # no tag lost
            assert all(mv.tags.get(t) for t in LINEAGE), mv.tags
            assert {T.METRIC + m for m in ("accuracy", "source_accuracy", "size_ratio")} <= set(mv.tags)
        alias = client.get_registered_model(name).aliases["candidate"]
        assert str(alias) in {str(mv.version) for mv in versions}
        # Both clients of one key report the one version that stands for it.
        for h in HASHES:
            reported = {r["version"] for r in results if r["target"] == target and r["config_hash"] == h}
            assert len(reported) == 1, (target, h, results)
    assert sum(r["created"] for r in results) == len(TARGETS) * len(HASHES)
    assert len(list_variants(client, source_name)) == len(TARGETS) * len(HASHES)


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    """`mlflow server` on a fresh PostgreSQL database, its schema created once before any client."""
    with fresh_postgres_database("modelpress") as backend:
        subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", backend], check=True, capture_output=True)
        root = tmp_path_factory.mktemp("pg-server")
        with running_mlflow_server(backend, root, workers=4) as uri:
            yield uri


def test_concurrent_registration_on_postgresql(pg_server, variant_model, tmp_path):
    client, source = _register_source(pg_server, "conc-pg", tmp_path)
    _check_store(client, "conc-pg", _race(pg_server, source, variant_model, tmp_path))


def test_the_whole_pipeline_against_postgresql(pg_server, tmp_path):
    """train-demo, run, variants and lineage through `mlflow server` on PostgreSQL, as a user would."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": pg_server, "MODELPRESS_HOME": str(tmp_path / "home")}
    assert run_cli(["train-demo", "--name", "pg-digits"], env).returncode == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: models:/pg-digits@champion\nevaluate: {latency_runs: 10, warmup_runs: 1}\n")
    proc = run_cli(["run", "--recipe", str(recipe)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(run_cli(["variants", "pg-digits", "--json"], env).stdout)
    assert row["uri"] == "models:/pg-digits.cpu-x86-int8/1" and row["aliases"] == ["candidate"]
    info = json.loads(run_cli(["lineage", row["uri"], "--json"], env).stdout)
    assert info["source"]["uri"] == "models:/pg-digits/1" and info["chain"] == ["export_onnx", "quantize"]


def test_concurrent_registration_on_a_fresh_sqlite_store(variant_model, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    client, source = _register_source(uri, "conc-sqlite", tmp_path)
    _check_store(client, "conc-sqlite", _race(uri, source, variant_model, tmp_path))


# ------------------------------------------------------------------ faults, promotion, read-back (SQLite-backed server)

def _register(uri: str, source, model_dir: Path, config_hash: str, target: str = "cpu-x86-int8", env_extra=None):
    go = model_dir.parent / f"go-{uuid.uuid4().hex}"
    go.touch()
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "tests.integration.registry_worker", uri,
                           json.dumps(dataclasses.asdict(source)), str(model_dir), target, config_hash, str(go)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return proc


def _result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # MLflow prints run links before it


def _hand_made_version(client, name: str, model_dir: Path, version_tags: dict[str, str]):
    """A version registered by hand with the given tags (modelpress itself never registers a failed one)."""
    from modelpress.core.hardware import parse_target
    from modelpress.registry.variants import log_variant_run

    run_id, info = log_variant_run(client, model_dir, parse_target("cpu-x86-fp32"), name, {}, {}, {"passed": False},
                                   None)
    return client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id,
                                       tags=version_tags)


@pytest.fixture(scope="module")
def reg_source(mlflow_server, tmp_path_factory):
    uri, _ = mlflow_server
    _, source = _register_source(uri, "reg-src", tmp_path_factory.mktemp("reg-src"))
    return source


def test_a_registration_killed_after_the_version_is_created_is_completed(mlflow_server, reg_source, variant_model):
    from modelpress.registry.variants import model_versions

    uri, _ = mlflow_server
    name = "reg-src.cpu-x86-int8"
    killed = _register(uri, reg_source, variant_model, "fault00000000001", env_extra={"MODELPRESS_FAULT": "after_version_created"})
    assert killed.returncode == 137
    from modelpress.registry.store import connect

    client = connect(uri)
    (mv,) = [v for v in model_versions(client, name) if v.tags.get("modelpress.config_hash") == "fault00000000001"]
    assert "candidate" not in client.get_registered_model(name).aliases or \
        str(client.get_registered_model(name).aliases["candidate"]) != str(mv.version)
    again = _register(uri, reg_source, variant_model, "fault00000000001")
    assert again.returncode == 0, again.stderr[-2000:]
    out = json.loads(again.stdout.strip().splitlines()[-1])
    assert out == {**out, "version": str(mv.version), "created": False}
    assert str(client.get_registered_model(name).aliases["candidate"]) == str(mv.version)


def test_a_version_without_lineage_is_never_listed_then_completed_or_cleaned(mlflow_server, reg_source, variant_model):
    """The state a kill between creating a version and writing its tags leaves: found, then repaired."""
    from modelpress.core.hardware import parse_target
    from modelpress.registry import tags as T
    from modelpress.registry.readback import list_variants
    from modelpress.registry.store import connect
    from modelpress.registry.variants import log_variant_run, model_versions, variant_key

    uri, _ = mlflow_server
    client = connect(uri)
    name = "reg-src.cpu-arm64-int8"
    key = variant_key(reg_source, "bare000000000001", "cpu-arm64-int8")
    lineage_tags = {T.KIND: "variant", T.FORMAT: "onnx", T.SOURCE_NAME: "reg-src", T.SOURCE_VERSION: reg_source.version,
                    T.CHAIN: "export_onnx>quantize", T.CONFIG_HASH: "bare000000000001", T.TARGET: "cpu-arm64-int8",
                    T.KEY: key, T.VERDICT: "passed", T.PIPELINE_RUN: "killed"}
    from modelpress.registry.source import _ensure_registered_model

    _ensure_registered_model(client, name, "test")

    def bare_version() -> str:
        """Its run carries the lineage; the version itself has none."""
        run_id, info = log_variant_run(client, variant_model, parse_target("cpu-arm64-int8"), name, lineage_tags,
                                       {"accuracy": 0.9}, {"passed": True}, None)
        return str(client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id).version)

    first = bare_version()
    assert all(r["uri"] != f"models:/{name}/{first}" for r in list_variants(client, "reg-src"))
    done = _register(uri, reg_source, variant_model, "bare000000000001", target="cpu-arm64-int8")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["version"] == first  # completed, not duplicated
    mv = client.get_model_version(name, first)
    assert mv.tags[T.KEY] == key and mv.tags[T.METRIC + "accuracy"] == "0.9"
    # A second bare version of the same key now has a complete twin: the next registration deletes it.
    second = bare_version()
    assert _register(uri, reg_source, variant_model, "bare000000000001", target="cpu-arm64-int8").returncode == 0
    assert second not in {str(v.version) for v in model_versions(client, name)}


def test_promote_rollback_and_history(mlflow_server, server_env, reg_source, variant_model):
    uri, _ = mlflow_server
    name = "reg-src.nvidia-cuda-fp16"
    v1 = _result(_register(uri, reg_source, variant_model, "prom000000000001", target="nvidia-cuda-fp16"))
    v2 = _result(_register(uri, reg_source, variant_model, "prom000000000002", target="nvidia-cuda-fp16"))
    for v in (v1, v2):
        proc = run_cli(["promote", f"models:/{name}/{v['version']}", "--alias", "production"], server_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"{name}@production: v{v1['version']} -> v{v2['version']}")
    back = run_cli(["rollback", name, "--alias", "production"], server_env)
    assert back.returncode == 0, back.stderr[-2000:]
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    assert str(client.get_registered_model(name).aliases["production"]) == v1["version"]
    moves = json.loads(run_cli(["history", name, "--json"], server_env).stdout)
    # Every alias write is recorded, the registrations' `candidate` moves included.
    assert [(m["action"], m["alias"], m["from_version"], m["to_version"], m["status"]) for m in moves] == [
        ("rollback", "production", v2["version"], v1["version"], "FINISHED"),
        ("promote", "production", v1["version"], v2["version"], "FINISHED"),
        ("promote", "production", None, v1["version"], "FINISHED"),
        ("register", "candidate", v1["version"], v2["version"], "FINISHED"),
        ("register", "candidate", None, v1["version"], "FINISHED"),
    ]
    again = run_cli(["promote", f"models:/{name}/{v1['version']}", "--alias", "production"], server_env)
    assert again.returncode == 0 and "already points at" in again.stdout  # nothing moved, nothing recorded
    assert len(json.loads(run_cli(["history", name, "--json"], server_env).stdout)) == len(moves)


def test_bad_registry_input_is_refused_and_changes_nothing(mlflow_server, server_env, reg_source, variant_model):
    from mlflow import MlflowClient

    from modelpress.registry import tags as T

    uri, _ = mlflow_server
    client = MlflowClient(uri, uri)
    name = "reg-src.cpu-x86-fp32"
    ok = _result(_register(uri, reg_source, variant_model, "bad0000000000001", target="cpu-x86-fp32"))
    assert run_cli(["promote", f"models:/{name}/{ok['version']}", "--alias", "production"], server_env).returncode == 0
    # A version whose gates failed (registered by hand: modelpress never registers one).
    good = client.get_model_version(name, ok["version"])
    failed = _hand_made_version(client, name, variant_model, {**good.tags, T.VERDICT: "failed", T.KEY: "hand-made"})
    cases = [
        (["promote", f"models:/{name}/99", "--alias", "production"], f"model '{name}' has no version 99"),
        (["promote", f"models:/{name}/{failed.version}", "--alias", "production"],
         f"{name}/{failed.version}: its gate verdict is 'failed', not passed"),
        (["rollback", name, "--alias", "staging"], "alias 'staging' of 'reg-src.cpu-x86-fp32' has no recorded move"),
    ]
    for args, needle in cases:
        proc = run_cli(args, server_env)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        assert needle in last and "Traceback" not in proc.stderr, last
        assert str(client.get_registered_model(name).aliases["production"]) == ok["version"]
        assert "staging" not in client.get_registered_model(name).aliases
    dead = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(["variants", "reg-src"], {**server_env, "MLFLOW_TRACKING_URI": dead})
    assert proc.returncode == 2 and f"MLflow tracking server {dead} is unreachable" in proc.stderr.strip().splitlines()[-1]


def test_variants_and_lineage_read_back(mlflow_server, server_env, reg_source, variant_model):
    uri, _ = mlflow_server
    v = _result(_register(uri, reg_source, variant_model, "read000000000001", target="cpu-x86-int8"))
    rows = json.loads(run_cli(["variants", "reg-src", "--json"], server_env).stdout)
    row = next(r for r in rows if r["uri"] == f"models:/{v['name']}/{v['version']}")
    assert row["target"] == "cpu-x86-int8" and row["chain"] == ["export_onnx", "quantize"]
    assert row["metrics"]["accuracy"] == 0.97 and row["verdict"] == "passed"
    # The hand-made version whose gates failed (test above) is listed as such, never hidden.
    assert {r["verdict"] for r in rows} == {"passed", "failed"}
    table = run_cli(["variants", "reg-src"], server_env).stdout
    assert f"models:/{v['name']}/{v['version']}" in table and "97.00%" in table
    info = json.loads(run_cli(["lineage", f"models:/{v['name']}/{v['version']}", "--json"], server_env).stdout)
    assert info["source"]["uri"] == f"models:/reg-src/{reg_source.version}"
    assert info["source"]["dataset"] == "sklearn-digits" and info["chain"] == ["export_onnx", "quantize"]
    text = run_cli(["lineage", f"models:/{v['name']}/{v['version']}"], server_env).stdout
    assert f"source     models:/reg-src/{reg_source.version}, dataset sklearn-digits" in text


def test_candidate_moves_only_to_a_newer_variant_unless_asked(mlflow_server, server_env, variant_model, tmp_path):
    """A rerun of an older recipe, or a run on an older source version, leaves `candidate` where it is."""
    from modelpress.core.hardware import parse_target
    from modelpress.registry.aliases import get_alias
    from modelpress.registry.source import register_source
    from modelpress.registry.variants import VariantConfig, register_variant

    uri, _ = mlflow_server
    client, old_source = _register_source(uri, "alias-src", tmp_path / "a")
    new_source = register_source(client, "alias-src", tmp_path / "a" / "src", "champion", metrics={}, description="v2")
    name = "alias-src.cpu-x86-int8"

    def register(source, config_hash: str, recipe: str, **variant):
        return register_variant(
            client, source=source, model_dir=variant_model, target=parse_target("cpu-x86-int8"),
            chain=["export_onnx", "quantize"], config_hash=config_hash, metrics={"accuracy": 0.97},
            verdict={"passed": True, "reason": "all gates passed", "results": []}, pipeline_run_id="alias-test",
            config=VariantConfig(**variant), recipe=recipe)

    a = register(new_source, "a1a1a1a1a1a1a1a1", "recipe-a")
    assert (a.version, a.alias_on) == ("1", "1")
    older_source = register(old_source, "b2b2b2b2b2b2b2b2", "recipe-b")  # a later version, from an older source
    assert older_source.created and (older_source.version, older_source.alias_on) == ("2", "1")
    c = register(new_source, "c3c3c3c3c3c3c3c3", "recipe-c")
    assert (c.version, c.alias_on) == ("3", "3")
    rerun = register(new_source, "a1a1a1a1a1a1a1a1", "recipe-a")  # a no-op rerun of the older recipe
    assert not rerun.created and (rerun.version, rerun.alias_on) == ("1", "3")
    assert "stays on newer version 3" in rerun.describe()
    assert get_alias(client, name, "candidate") == "3"
    asked = register(new_source, "a1a1a1a1a1a1a1a1", "recipe-a", move_alias="always")
    assert asked.alias_on == "1" == get_alias(client, name, "candidate")
    # Each alias is judged on its own: a fresh alias is set wherever it is first asked for.
    assert register(old_source, "b2b2b2b2b2b2b2b2", "recipe-b", alias="nightly").alias_on == "2"

    rows = json.loads(run_cli(["variants", "alias-src", "--json"], server_env).stdout)
    assert [(r["version"], r["recipe"], r["config_hash"][:4]) for r in rows] == [
        ("1", "recipe-a", "a1a1"), ("2", "recipe-b", "b2b2"), ("3", "recipe-c", "c3c3")]
    table = run_cli(["variants", "alias-src"], server_env).stdout
    assert "recipe-c c3c3c3c3" in table and "| recipe " in table
