"""The demo pipeline's wall time, each task's wall time, and what each task spends importing.

    python benchmarks/task_startup.py [--runs 3]

On a fresh store: `modelpress demo` once (trains the demo model), then `--runs` forced runs of the
demo pipeline, timed end to end (median and spread), and one more run with PYTHONPROFILEIMPORTTIME=1,
whose task logs say what every task imported and for how long. Goals (issue 21): the demo pipeline
in at most 15 s on 2 cores, and tasks that touch only ONNX started in at most 1.5 s, without torch,
mlflow or Great Expectations where they are not used. Nothing here asserts; it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "task_startup.json"
HEAVY = ("torch", "mlflow", "great_expectations", "sklearn", "onnxruntime", "onnx", "kfp", "pandas", "scipy")
GOALS = {"demo_pipeline_s": 15.0, "onnx_task_start_s": 1.5}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - Executing task '([^']+)'")
_END = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - Task '([^']+)' finished with status (\w+)")
_IMPORT = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def task_walls(log: str) -> dict[str, float]:
    """Task -> seconds from 'Executing task' to 'finished', from a kfp.local task log."""
    started, out = {}, {}
    for line in _ANSI.sub("", log).splitlines():
        if m := _START.match(line):
            started[m[4]] = _seconds(m[1], m[2], m[3])
        elif (m := _END.match(line)) and m[4] in started:
            out[m[4]] = round(_seconds(m[1], m[2], m[3]) - started[m[4]], 3)
    return out


def task_imports(log: str) -> dict[str, dict]:
    """Task -> total import seconds and the heavy packages it imported (cumulative seconds each)."""
    out, task = {}, None
    for line in _ANSI.sub("", log).splitlines():
        if m := _START.match(line):
            task = m[4]
            out[task] = {"import_s": 0.0, "heavy": {}}
        elif _END.match(line):
            task = None
        elif task and (m := _IMPORT.search(line)):
            cumulative, depth, name = int(m[2]) / 1e6, len(m[3]), m[4]
            if depth == 0:  # a top-level import: its cumulative time holds everything below it
                out[task]["import_s"] += cumulative
            if name in HEAVY:
                out[task]["heavy"][name] = round(max(out[task]["heavy"].get(name, 0.0), cumulative), 3)
    for row in out.values():
        row["import_s"] = round(row["import_s"], 3)
    return out


def _demo(env: dict[str, str], cwd: Path, *extra: str) -> tuple[float, str]:
    """One `modelpress demo` run: its wall seconds and its task log."""
    runs = Path(env["MODELPRESS_HOME"]) / "runs"
    before = set(runs.glob("run-*")) if runs.exists() else set()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "modelpress", "demo", "--quiet", *extra], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    (folder,) = set(runs.glob("run-*")) - before
    return wall, (folder / "tasks.log").read_text()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed forced runs of the demo pipeline")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    from modelpress.components.evaluate.measure import machine

    with tempfile.TemporaryDirectory(prefix="modelpress-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPROFILEIMPORTTIME")}
        env["MODELPRESS_HOME"] = str(Path(tmp) / "home")
        first, _ = _demo(env, Path(tmp))
        print(f"demo (train + first run): {first:.1f} s", file=sys.stderr)
        walls, per_task = [], []
        for i in range(args.runs):
            wall, log = _demo(env, Path(tmp), "--force")
            walls.append(wall)
            per_task.append(task_walls(log))
            print(f"forced demo run {i + 1}/{args.runs}: {wall:.1f} s", file=sys.stderr)
        _, profiled = _demo({**env, "PYTHONPROFILEIMPORTTIME": "1"}, Path(tmp), "--force")

    imports = task_imports(profiled)
    tasks = []
    for name in per_task[0]:
        times = [run[name] for run in per_task if name in run]
        tasks.append({"task": name, "wall_s": round(statistics.median(times), 3),
                      "wall_spread_s": round(max(times) - min(times), 3), **imports.get(name, {})})
    result = {
        "command": "python benchmarks/task_startup.py",
        "machine": machine(),
        "goals": GOALS,
        "demo_pipeline_s": {"median": round(statistics.median(walls), 2), "min": round(min(walls), 2),
                            "max": round(max(walls), 2), "runs": len(walls)},
        "sum_task_wall_s": round(sum(t["wall_s"] for t in tasks), 2),
        "sum_import_s": round(sum(t.get("import_s", 0.0) for t in tasks), 2),
        "tasks": tasks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(table(result))
    print(f"\nwritten to {args.out}")
    return 0


def table(result: dict) -> str:
    """The results as Markdown (also the README's block, `benchmarks/readme_tables.py`)."""
    d, m = result["demo_pipeline_s"], result["machine"]
    cpu = f"{m['cpu']}, " if m.get("cpu") else ""
    lines = [f"{cpu}CPU flags: {', '.join(m['cpu_flags'])}; {m['cores']} cores. `modelpress demo --force` end to end: "
             f"median **{d['median']} s** (min {d['min']}, max {d['max']}, {d['runs']} runs; goal <= "
             f"{result['goals']['demo_pipeline_s']} s); {result['sum_task_wall_s']} s of task wall time, "
             f"{result['sum_import_s']} s of it importing.", "",
             "| task | wall s (median) | imports s | heavy imports (cumulative s) |", "|---|---|---|---|"]
    for t in result["tasks"]:
        heavy = ", ".join(f"{k} {v:.2f}" for k, v in sorted(t.get("heavy", {}).items(), key=lambda kv: -kv[1])
                          if v >= 0.01)
        lines.append(f"| {t['task']} | {t['wall_s']:.2f} | {t.get('import_s', 0.0):.2f} | {heavy or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
