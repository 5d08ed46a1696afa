"""The CI/CD example: a valid workflow on current action versions, an install a stock runner can do, commands
that exist, and a local part that runs here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from modelpress.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "github-actions" / "modelpress.yml"


# The first major of each action that runs on Node 24 (Node 20 actions are deprecated on GitHub's runners since
# June 2026). An action not listed here fails the test: look up its current major, then add it.
CURRENT_MAJOR = {"actions/checkout": 6, "actions/setup-python": 6, "actions/upload-artifact": 7}


def _steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["compress"]["steps"]


def test_the_workflow_is_valid_for_github_actions():
    """Checked against SchemaStore's GitHub workflow schema, as vendored by check-jsonschema (works offline)."""
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(WORKFLOW)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_action_is_on_a_current_major():
    used = [s["uses"] for s in _steps() if "uses" in s]
    assert used
    for ref in used:
        action, _, version = ref.partition("@")
        assert action in CURRENT_MAJOR, f"{action}: not in CURRENT_MAJOR; look up its current major"
        assert re.fullmatch(r"v\d+(\.\d+)*", version), ref
        assert int(version[1:].split(".")[0]) >= CURRENT_MAJOR[action], f"{ref} is older than v{CURRENT_MAJOR[action]}"


def test_the_install_step_takes_the_cpu_torch_the_package_pins_then_the_checkout():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_pin,) = [d for d in pins if d.startswith("torch")]
    (install,) = [s["run"] for s in _steps() if s.get("name") == "Install modelpress"]
    lines = [shlex.split(ln) for ln in install.strip().splitlines()]
    torch_line = next(ln for ln in lines if torch_pin in ln)
    assert torch_line[torch_line.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert lines[-1] == ["python", "-m", "pip", "install", "."]  # from the checkout: modelpress is not on PyPI


def test_every_run_block_is_valid_bash():
    for step in _steps():
        if "run" in step:  # GitHub expands ${{ }} before the shell sees it
            script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
            proc = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
            assert proc.returncode == 0, (step.get("name"), proc.stderr)


def _commands() -> list[list[str]]:
    steps = _steps()
    lines = [ln.strip() for s in steps if "run" in s for ln in s["run"].splitlines()]
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("modelpress ")]


def test_every_modelpress_command_in_the_workflow_parses():
    commands = _commands()
    assert [c[0] for c in commands] == ["metrics", "compile", "submit"]
    parser = build_parser()
    for args in commands:
        parser.parse_args([a.replace('"$RECIPE"', "r.yaml").replace("$RECIPE", "r.yaml") for a in args])


def test_the_local_part_runs(tmp_path, monkeypatch, capsys):
    recipe = yaml.safe_load(WORKFLOW.read_text())["jobs"]["compress"]["env"]["RECIPE"]
    monkeypatch.chdir(ROOT)
    assert main(["metrics", "--recipe", recipe]) == 0
    assert "top1_agreement  (gated)" in capsys.readouterr().out
    assert main(["compile", "--recipe", recipe, "-o", str(tmp_path / "pipeline.yaml")]) == 0
    assert (tmp_path / "pipeline.yaml").stat().st_size > 10_000
