"""Run the compression pipeline on this machine through `kfp.local`.

Every task is a fresh subprocess running the same code a cluster runs.
The full task logs go to a file under the run folder; the terminal gets
one line per step and the steps' own progress lines.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from modelpress.errors import ModelpressError
from modelpress.pipelines.run_folder import ERROR_FILE, SCRATCH, hold, local_run_env, reap

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")


@dataclass(frozen=True)
class LocalRun:
    source: dict[str, Any]  # the pinned source version (registry.source.SourceRef as JSON)
    registered: list[dict[str, Any]]  # targets skipped: their variant was registered already
    verdicts: list[dict[str, Any]]  # targets built this run, one verdict each, in target order
    log_path: Path
    run_dir: Path

    def report_path(self, verdict: dict[str, Any]) -> Path | None:
        """The gate step's Markdown report for that target, written pass or fail (beside its verdict)."""
        report = Path(verdict["verdict_path"]).parent / "report"
        return report if report.is_file() else None

    def pareto_report(self) -> Path | None:
        """The summarize step's HTML report, copied into the run's folder under a name a browser opens as HTML."""
        import shutil

        found = sorted(self.run_dir.rglob("summarize/report"))
        if not found:
            return None
        return Path(shutil.copyfile(found[0], self.run_dir / "pareto_report.html"))


class _ProgressTee(io.TextIOBase):
    """Everything to the log; to the terminal, each task as it starts and ends (its target, its seconds)
    and the steps' own `[modelpress]` lines. Quiet: only failures. Plain lines either way, so a
    pipe or a CI log reads the same as a terminal."""

    def __init__(self, log: TextIO, terminal: TextIO, verbose: bool, quiet: bool = False) -> None:
        self.log, self.terminal, self.verbose, self.quiet = log, terminal, verbose, quiet
        self._buf = ""
        # Start times by task name; the targets' tasks of one name run side by side, first in first out.
        self._started: dict[str, list[float]] = {}

    def write(self, s: str) -> int:
        self.log.write(s)
        if self.verbose:
            self.terminal.write(s)
            return len(s)
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._show(_ANSI.sub("", line).strip())
        return len(s)

    def _show(self, line: str) -> None:
        if m := _TASK_START.search(line):
            self._started.setdefault(m[1], []).append(time.monotonic())
            out = f"  > {m[1]}"
        elif m := _TASK_END.search(line):
            starts = self._started.get(m[1])
            took = f" in {time.monotonic() - starts.pop(0):.1f} s" if starts else ""
            if m[2] != "SUCCESS":  # shown even when quiet
                self.terminal.write(f"  x {m[1]} {m[2].lower()}{took}\n")
                self.terminal.flush()
                return
            out = f"  < {m[1]}{took}"
        elif line.startswith("[modelpress]"):
            out = f"    {line.removeprefix('[modelpress] ')}"
        else:
            return
        if not self.quiet:
            self.terminal.write(out + "\n")
            self.terminal.flush()

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


def run_local(
    recipe: Any, tracking_uri: str, runs_dir: Path, force: bool = False, verbose: bool = False, docker: bool = False,
    quiet: bool = False,
) -> LocalRun:
    """Run the pipeline here: each task a subprocess, or (`docker`) a container of the component image."""
    from modelpress.registry.store import connect

    if docker and not tracking_uri.startswith(("http://", "https://")):
        raise ModelpressError(
            "containerized runs need an MLflow server the containers can reach, not the embedded store",
            "set MLFLOW_TRACKING_URI=http://127.0.0.1:<port> (containers share the host network)",
        )
    runs_dir.mkdir(parents=True, exist_ok=True)
    # A run killed mid-way left RUNNING MLflow runs and scratch files: settle them first.
    reap(runs_dir, lambda: connect(tracking_uri), lambda line: print(line, file=sys.stderr, flush=True))
    # One folder per run (pipeline root, task log, error file), so parallel runs never share a file.
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=runs_dir))
    with hold(run_dir):
        return _run_in(run_dir, recipe, tracking_uri, force, verbose, docker, quiet)


def _run_in(run_dir: Path, recipe: Any, tracking_uri: str, force: bool, verbose: bool, docker: bool,
            quiet: bool) -> LocalRun:
    from kfp import local

    from modelpress.components.task import ERROR_FILE_ENV
    from modelpress.core.telemetry import opt_out
    from modelpress.pipelines.arguments import pipeline_arguments
    from modelpress.pipelines.compress import build_pipeline

    log_path = run_dir / "tasks.log"
    # Where a failing task writes its one-line reason; under the run's folder, which containers see too.
    err_path = str(run_dir / ERROR_FILE)
    Path(err_path).touch()
    # Tasks inherit these (a container gets them passed): the error file, the tag for their MLflow runs, and
    # the libraries' telemetry opt-outs.
    task_env = {ERROR_FILE_ENV: err_path, **local_run_env(run_dir), **opt_out()}
    if docker:
        # The image runs as a non-root user; it writes outputs (and a failure's reason) under the mounted root.
        run_dir.parent.chmod(0o777)
        run_dir.chmod(0o777)
        Path(err_path).chmod(0o666)
        runner = local.DockerRunner(network_mode="host", environment=task_env)
    else:
        runner = local.SubprocessRunner(use_venv=False)
    local.init(runner, pipeline_root=str(run_dir))
    # Every task's scratch (kfp's `mktemp -d` per task, our tempfile folders) goes under the run and is
    # removed with it, instead of a dozen folders per run left in /tmp.
    scratch = run_dir / SCRATCH
    scratch.mkdir()
    saved = {k: os.environ.get(k) for k in [*task_env, "TMPDIR"]}
    os.environ.update(task_env, TMPDIR=str(scratch))
    # kfp.local wraps sys.stdout/sys.stderr while a task streams its log; with the targets' tasks in
    # threads, a wrapper can outlive the run and indent what the CLI prints next. Put them back after.
    streams = sys.stdout, sys.stderr
    try:
        # kfp warns on any image without "python" in its name; ours is a Python image.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        # Requests and limits are for a cluster (recipe `resources:`); kfp.local says it ignores them.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        with open(log_path, "w") as log, redirect_stdout(_ProgressTee(log, sys.stderr, verbose, quiet)):
            try:
                build_pipeline(recipe)(**pipeline_arguments(recipe, tracking_uri, force))
            except (RuntimeError, ValueError):
                # RuntimeError: a task failed. ValueError: seen under DockerRunner, a task whose container
                # failed is recorded as a success without outputs, and the next task cannot find them.
                reason = Path(err_path).read_text().strip().splitlines()
                if reason:
                    raise ModelpressError(reason[-1]) from None
                raise ModelpressError(
                    "a pipeline task failed", f"see the task logs in {log_path}"
                ) from None
    finally:
        sys.stdout, sys.stderr = streams
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(scratch, ignore_errors=True)
        Path(err_path).unlink(missing_ok=True)
    return _collect(run_dir, log_path)


def _output(run_dir: Path, task_output: str) -> Path | None:
    found = sorted(run_dir.rglob(task_output))
    return found[0] if found else None


def _collect(run_dir: Path, log_path: Path) -> LocalRun:
    """What the run's tasks wrote: the pinned source, the variants found registered, the summary (if it ran)."""
    source, registered = _output(run_dir, "check-registered/source"), _output(run_dir, "check-registered/registered")
    if source is None or registered is None:
        raise ModelpressError("the pipeline's first task left no output", f"see the task logs in {log_path}")
    summary = _output(run_dir, "summarize/summary")
    return LocalRun(source=json.loads(source.read_text()), registered=json.loads(registered.read_text()),
                    verdicts=json.loads(summary.read_text()) if summary else [], log_path=log_path, run_dir=run_dir)


def source_role(recipe: Any) -> str | None:
    """What the source is to the run when a technique uses it as something else (distill: the teacher)."""
    return next((f"{t.name} {t.source_role}" for t, _ in recipe.enabled() if t.source_role), None)


def preflight(client: Any, recipe: Any, tracking_uri: str) -> Any:
    """The registry entries the recipe names, resolved before any task starts: a missing one is one line now;
    so is anything else a technique needs to reach (`Technique.preflight`)."""
    from modelpress.registry import source as src

    def resolve(uri: str, what: str | None) -> Any:
        try:
            return src.resolve_source(client, uri)
        except ModelpressError as exc:
            if what is None:
                raise
            raise ModelpressError(f"{what}: {exc.problem}", exc.fix) from None

    role = source_role(recipe)
    ref = resolve(recipe.source, f"{role} (the recipe's source)" if role else None)
    for technique, config in recipe.enabled():
        for what, uri in technique.registry_models(config).items():
            resolve(uri, what)
        technique.preflight(config, tracking_uri)
    return ref
