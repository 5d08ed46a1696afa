"""The demo pipeline's wall time, each task's wall time, and what each task spends importing.

    python benchmarks/task_startup.py [--runs 3]

On a fresh store: `modelpress demo` once (trains the demo model), then `--runs` forced runs of the
demo pipeline, timed end to end (median and spread), and one more run with PYTHONPROFILEIMPORTTIME=1,
whose task logs say what every task imported and for how long; each run's result row (gate, latency
and size against the source) is kept. Then the quantize step alone, as its task runs it (a fresh
process: imports, the call, its peak memory), against ONNX Runtime's own `quantize_static` in a fresh
process, on the demo CNN's ONNX file and 256 calibration samples. Goals (issue 21): the demo pipeline
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


_ROW = re.compile(r"^\| digits-cnn\.cpu-x86-int8 \| cpu-x86-int8 \| [^|]*\(([\d.]+)x\) \|[^|]*\| b1 [\d.]+x, "
                  r"b64 ([\d.]+)x *\| (PASSED|FAILED) ", re.M)


def result_row(stdout: str) -> dict:
    """The demo's verdict on its one target, from the result table it prints."""
    m = _ROW.search(stdout)
    return {"gate": m[3], "size_ratio": float(m[1]), "latency_ratio_b64": float(m[2])} if m else {"gate": "?"}


# Peak RSS of this process since its exec: VmHWM (Linux keeps ru_maxrss across fork and exec, so a child
# started from a big parent would report the parent's peak).
_PEAK = """
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
# The quantize step as its KFP task calls it, and ONNX Runtime's own call; each in a fresh process.
_STEP = _PEAK + """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from modelpress.components.quantize.step import quantize_step
quantize_step(sys.argv[1], "cpu-x86-int8", Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]),
              baseline=Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": peak_mib()}))
"""
_ORT = _PEAK + """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from onnxruntime.quantization import CalibrationDataReader, quantize_static

class Reader(CalibrationDataReader):
    def __init__(self, x):
        self.rows = iter([{"input": x[i:i + 1]} for i in range(len(x))])
    def get_next(self):
        return next(self.rows, None)

x = np.load(sys.argv[2])["x"]
quantize_static(sys.argv[1], sys.argv[3], Reader(x))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": peak_mib()}))
"""


def quantize_step_cost(tmp: Path, runs: int) -> list[dict]:
    """Process wall, in-process seconds and peak RSS (median of `runs`) per way of quantizing the demo CNN."""
    import numpy as np

    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.models.train import TrainConfig, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    data = load_dataset("sklearn-digits")
    spec = DigitsCNNSpec()
    module = build_model(spec, seed=0)
    train(module, data, TrainConfig(epochs=3), progress=lambda s: None)  # weights only need to be real
    torch_dir = artifacts.save_torch(tmp / "q-torch", module, spec, artifacts.TensorSpec(shape=(1, 8, 8)),
                                     "sklearn-digits")
    onnx_dir = export_onnx(torch_dir, tmp / "q-onnx")
    data.save(tmp / "q-data.npz")
    np.savez(tmp / "q-calib.npz", x=data.x_train[:256].astype(np.float32))
    ways = {
        "modelpress quantize step, cpu-x86-int8 defaults": ("step", "{}"),
        "modelpress quantize step, tune: {} (the demo's)": ("step", json.dumps({"tune": {}})),
        "ONNX Runtime quantize_static, defaults": ("ort", None),
    }
    rows = []
    for label, (kind, config) in ways.items():
        samples = []
        for i in range(runs):
            out = tmp / f"q-out-{len(rows)}-{i}"
            if kind == "step":
                cmd = [sys.executable, "-c", _STEP, config, str(onnx_dir), str(tmp / "q-data.npz"), str(out)]
            else:
                cmd = [sys.executable, "-c", _ORT, str(artifacts.onnx_file(onnx_dir)), str(tmp / "q-calib.npz"),
                       str(tmp / f"q-ort-{i}.onnx")]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{label}: {proc.stderr[-2000:]}")
            samples.append({"process_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])})
        rows.append({"way": label, **{k: round(statistics.median(s[k] for s in samples), 3)
                                      for k in ("process_s", "seconds", "peak_mib")}})
        print(f"{label}: {rows[-1]}", file=sys.stderr)
    return rows


def _demo(env: dict[str, str], cwd: Path, *extra: str) -> tuple[float, str, str]:
    """One `modelpress demo` run: its wall seconds, its task log and what it printed."""
    runs = Path(env["MODELPRESS_HOME"]) / "runs"
    before = set(runs.glob("run-*")) if runs.exists() else set()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "modelpress", "demo", "--quiet", *extra], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    (folder,) = set(runs.glob("run-*")) - before
    return wall, (folder / "tasks.log").read_text(), proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed forced runs of the demo pipeline")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    from modelpress.components.evaluate.measure import machine

    with tempfile.TemporaryDirectory(prefix="modelpress-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPROFILEIMPORTTIME")}
        env["MODELPRESS_HOME"] = str(Path(tmp) / "home")
        first, _, printed = _demo(env, Path(tmp))
        verdicts = [result_row(printed)]
        print(f"demo (train + first run): {first:.1f} s; {verdicts[0]}", file=sys.stderr)
        walls, per_task = [], []
        for i in range(args.runs):
            wall, log, printed = _demo(env, Path(tmp), "--force")
            walls.append(wall)
            per_task.append(task_walls(log))
            verdicts.append(result_row(printed))
            print(f"forced demo run {i + 1}/{args.runs}: {wall:.1f} s; {verdicts[-1]}", file=sys.stderr)
        _, profiled, _ = _demo({**env, "PYTHONPROFILEIMPORTTIME": "1"}, Path(tmp), "--force")
        quantize = quantize_step_cost(Path(tmp), args.runs)

    imports = task_imports(profiled)
    tasks = []
    for name in dict.fromkeys(n for run in per_task for n in run):  # register runs only where the gate passed
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
        "demo_results": verdicts,
        "quantize_step": quantize,
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
    if verdicts := result.get("demo_results"):
        passed = [v for v in verdicts if v["gate"] == "PASSED"]
        runs = "; ".join(f"{v['gate']} at {v.get('latency_ratio_b64', float('nan')):.2f}x latency (b64), "
                         f"{v.get('size_ratio', float('nan')):.2f}x size" for v in verdicts)
        slower = [v for v in passed if v.get("latency_ratio_b64", 2.0) > 1.0]
        lines += ["", f"The demo's cpu-x86-int8 variant, run by run, against its source: {runs}. Registered in "
                  f"{len(passed)} of {len(verdicts)} runs, {len(slower)} of them slower than the source."]
    if quantize := result.get("quantize_step"):
        lines += ["", "| quantizing the demo CNN, fresh process | process wall s | in-process s | peak MiB |",
                  "|---|---|---|---|"]
        lines += [f"| {q['way']} | {q['process_s']:.2f} | {q['seconds']:.2f} | {q['peak_mib']:.0f} |"
                  for q in quantize]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
