"""The CI/CD example uses commands that exist, and its local part runs here."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from modelpress.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "github-actions" / "modelpress.yml"


def _commands() -> list[list[str]]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["compress"]["steps"]
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
