"""The demo pipeline with every component inside the image we ship (kfp.local.DockerRunner).

Setup, each step reused when already done on this machine: a Docker engine (the running one,
or `dockerd --bridge=none --iptables=false` started here as root); a base image made without
pulling (debootstrap, then `docker import`); a wheelhouse (`modelpress image wheelhouse`, the
only step that needs the package index); then the component image built with network none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.long]

BASE = "modelpress-base:bookworm"
CACHE = Path(os.environ.get("MODELPRESS_CACHE", Path.home() / ".cache" / "modelpress"))


def _engine():
    docker = pytest.importorskip("docker", reason="the Docker SDK (pip install 'modelpress[image]') is needed")
    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no engine yet
        pass
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("no Docker engine and no way to start one here (needs root and dockerd; .ci/run installs it)")
    log = open(CACHE / "dockerd.log", "a")  # noqa: SIM115 - the daemon outlives this test
    subprocess.Popen(["dockerd", "--bridge=none", "--iptables=false"], stdout=log, stderr=subprocess.STDOUT,
                     start_new_session=True)
    for _ in range(60):
        try:
            client = docker.from_env()
            client.ping()
            return client
        except Exception:  # noqa: BLE001
            time.sleep(1)
    pytest.fail(f"dockerd did not come up; see {CACHE / 'dockerd.log'}")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    client = _engine()
    if not client.images.list(name=BASE):
        if not shutil.which("debootstrap"):
            pytest.skip("debootstrap is not installed (.ci/run installs it)")
        root = tmp_path_factory.mktemp("rootfs") / "bookworm"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(root), "http://deb.debian.org/debian"], check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    wheelhouse = CACHE / "wheelhouse"
    if not all(any(wheelhouse.glob(w)) for w in ("torch-*.whl", "psycopg2_binary-*.whl", "kfp_server_api-*.whl")):
        assert run_cli(["image", "wheelhouse", str(wheelhouse)], dict(os.environ)).returncode == 0
    from modelpress import __version__

    tag = f"modelpress-e2e:{__version__}"
    proc = run_cli(["image", "build", "--wheelhouse", str(wheelhouse), "--base-image", BASE, "--tag", tag],
                   dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "building modelpress-e2e" in proc.stderr and "(network none)" in proc.stderr
    assert f"built {tag}: " in proc.stderr and "MiB over the base image" in proc.stderr
    return tag


def test_the_wheelhouse_is_in_no_layer_of_the_image(image):
    """Two stages: the runtime image copies the installed packages, never the wheels they came from."""
    import docker

    history = docker.from_env().images.get(image).history()
    assert history and not [h for h in history if "wheel" in h.get("CreatedBy", "")]
    listing = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "sh", "-c",
                              "ls /tmp; python3 -c 'import torch, os; print(os.path.isdir(os.path.join("
                              "os.path.dirname(torch.__file__), \"test\")))'"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert listing == ["False"]  # nothing left in /tmp, and torch's C++ test programs dropped


def test_the_image_runs_as_a_non_root_user(image):
    script = "id -u; modelpress image; python3 -c 'import psycopg2, mlflow; print(psycopg2.__name__)'"
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "sh", "-c", script],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] != "0" and out[0] == "10001"
    assert out[1].startswith("ghcr.io/modelpress/modelpress:")
    assert out[2] == "psycopg2"  # the Helm chart runs `mlflow server` on PostgreSQL from this image


def test_demo_pipeline_runs_inside_the_image(image, server_env, client, tmp_path):
    env = {**server_env, "MODELPRESS_IMAGE": image, "MODELPRESS_HOME": str(tmp_path / "home")}
    assert run_cli(["train-demo", "--name", "boxed-digits"], env).returncode == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: models:/boxed-digits@champion\nevaluate: {latency_runs: 10, warmup_runs: 1}\n")
    proc = run_cli(["run", "--docker", "--recipe", str(recipe)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "one container per step" in proc.stderr
    (log_file,) = (tmp_path / "home" / "runs").glob("run-*/tasks.log")  # each run its own folder and log
    log = log_file.read_text()
    assert log.count(f"Found image '{image}'") >= 10  # every task ran in the image
    mv = client.get_model_version_by_alias("boxed-digits.cpu-x86-int8", "candidate")
    assert mv.tags["modelpress.chain"] == "export_onnx>quantize"


def test_a_failing_task_in_a_container_reports_its_one_line_reason(image, server_env, tmp_path):
    env = {**server_env, "MODELPRESS_IMAGE": image, "MODELPRESS_HOME": str(tmp_path / "home")}
    assert run_cli(["train-demo", "--name", "boxed-bad"], env).returncode == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: models:/boxed-bad@champion\n"
                      "prune: {method: structured, ratio: 0.5, layer_ratios: {conv9: 0.3}}\n")
    proc = run_cli(["run", "--docker", "--recipe", str(recipe)], env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no Conv2d, Linear or Embedding layer named 'conv9'" in proc.stderr.strip().splitlines()[-1]


def test_docker_runs_refuse_the_embedded_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MODELPRESS_HOME"] = str(tmp_path)
    assert run_cli(["train-demo"], env).returncode == 0
    proc = run_cli(["run", "--docker"], env)
    assert proc.returncode == 2
    assert "containerized runs need an MLflow server" in proc.stderr.strip().splitlines()[-1]
