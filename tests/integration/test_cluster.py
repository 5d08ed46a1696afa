"""`modelpress submit` and `schedule` against a local HTTP server that records what a Kubeflow host receives."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


class _Recorder(BaseHTTPRequestHandler):
    """Answers the few KFP v2beta1 endpoints the client calls, and keeps every request."""

    requests: list[dict] = []
    recurring: list[dict] = []

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?")[0]
        self.requests.append({"method": self.command, "path": path, "query": self.path.partition("?")[2],
                              "auth": self.headers.get("Authorization"), "body": body})
        if path.endswith("/healthz"):
            return self._reply(200, {"multi_user": False})
        if path == "/apis/v2beta1/experiments" and self.command == "GET":
            return self._reply(200, {"experiments": [{"experiment_id": "exp-1", "display_name": "modelpress"}],
                                     "total_size": 1})
        if path == "/apis/v2beta1/experiments" and self.command == "POST":
            return self._reply(200, {"experiment_id": "exp-1", "display_name": body["display_name"]})
        if path == "/apis/v2beta1/runs" and self.command == "POST":
            return self._reply(200, {"run_id": "run-1", "display_name": body["display_name"]})
        if path == "/apis/v2beta1/recurringruns" and self.command == "GET":
            return self._reply(200, {"recurringRuns": self.recurring, "recurring_runs": self.recurring,
                                     "total_size": len(self.recurring)})
        if path == "/apis/v2beta1/recurringruns" and self.command == "POST":
            rr = {"recurring_run_id": f"rr-{len(self.requests)}", "display_name": body["display_name"]}
            self.recurring.append(rr)
            return self._reply(200, rr)
        if path.startswith("/apis/v2beta1/recurringruns/") and self.command == "DELETE":
            gone = path.rsplit("/", 1)[1]
            self.recurring[:] = [r for r in self.recurring if r["recurring_run_id"] != gone]
            return self._reply(200, {})
        return self._reply(404, {"error": f"not recorded: {self.command} {path}"})

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture()
def kfp_host():
    _Recorder.requests, _Recorder.recurring = [], []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _Recorder
    server.shutdown()


@pytest.fixture()
def env(server_env, tmp_path):
    return {**server_env, "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc:5000", "KF_PIPELINES_TOKEN": TOKEN}


def _compiled(tmp_path: Path, recipe: str, env: dict) -> dict:
    assert run_cli(["compile", "-o", str(tmp_path / "expected.yaml"), "--recipe", recipe], env).returncode == 0
    return yaml.safe_load((tmp_path / "expected.yaml").read_text())


def test_submit_sends_what_we_compiled(kfp_host, env, tmp_path):
    host, rec = kfp_host
    recipe = "recipes/digits-int8.yaml"
    proc = run_cli(["submit", "--host", host, "--recipe", recipe], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"submitted run run-1 to {host}" in proc.stdout
    (run,) = [r for r in rec.requests if r["path"] == "/apis/v2beta1/runs"]
    assert run["auth"] == f"Bearer {TOKEN}"
    assert run["body"]["pipeline_spec"] == _compiled(tmp_path, recipe, env)
    params = run["body"]["runtime_config"]["parameters"]
    assert params["tracking_uri"] == "http://mlflow.mlflow.svc:5000"
    assert json.loads(params["gates"])[1]["metric"] == "top1_agreement"  # each step's own section
    assert "recipe" not in params and params["targets"] == ["cpu-x86-int8"] and params["force"] is False


def test_schedule_creates_then_replaces_one_recurring_run(kfp_host, env, tmp_path):
    host, rec = kfp_host
    recipe = "recipes/digits-prune-int8.yaml"
    args = ["schedule", "--host", host, "--recipe", recipe, "--cron", "0 2 * * *", "--max-concurrency", "2",
            "--name", "nightly"]
    first = run_cli(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "cron '0 0 2 * * *'" in first.stdout and "(new)" in first.stdout
    (create,) = [r for r in rec.requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/recurringruns"]
    body = create["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert body["max_concurrency"] == "2" or body["max_concurrency"] == 2
    assert body["no_catchup"] is True and body["display_name"] == "nightly" and body["mode"] == "ENABLE"
    assert body["pipeline_spec"] == _compiled(tmp_path, recipe, env)
    second = run_cli(args, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "replaced rr-" in second.stdout
    assert [r["method"] for r in rec.requests if r["path"].startswith("/apis/v2beta1/recurringruns/")] == ["DELETE"]
    assert len(rec.recurring) == 1


@pytest.mark.parametrize("cron", ["0 0 25 * * *", "every night", "*/0 * * * *"])
def test_an_invalid_cron_is_refused_before_anything_is_sent(kfp_host, env, cron):
    host, rec = kfp_host
    proc = run_cli(["schedule", "--host", host, "--cron", cron], env)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"modelpress: error: cron {cron!r}") and "Traceback" not in proc.stderr
    assert rec.requests == []


def test_unreachable_host_or_missing_token_is_one_line_naming_the_host(env):
    dead = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(["submit", "--host", dead], env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"modelpress: error: Kubeflow host {dead} is unreachable")
    no_token = {k: v for k, v in env.items() if k != "KF_PIPELINES_TOKEN"}
    proc = run_cli(["schedule", "--host", dead, "--cron", "0 0 2 * * *"], no_token)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"modelpress: error: no auth token for Kubeflow host {dead}; pass --token or set KF_PIPELINES_TOKEN")
