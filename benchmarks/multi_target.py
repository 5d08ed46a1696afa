"""One run for three targets against one run for one: the wall time the shared prefix saves.

    python benchmarks/multi_target.py [--repeats 2] [--out benchmarks/results/multi_target.json]

Registers the demo CNN in a throwaway MLflow store, then times `modelpress run` of
recipes/digits-cpu-targets.yaml (prune once, then x86 INT8, arm64 INT8 and x86 FP32) against the
same recipe with `--target cpu-x86-int8`, alternating the two so drift hits both (`--force`:
every run computes). The issue's bar: three targets in at most 1.6x the time of one.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "multi_target.json"
RECIPE = ROOT / "recipes" / "digits-cpu-targets.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="runs of each (default 2)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    from modelpress.components.evaluate.measure import cpu_flags

    bin_dir = Path(sys.executable).parent
    times: dict[str, list[float]] = {"one target": [], "three targets": []}
    tasks: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="modelpress-targets-") as tmp:
        env = dict(os.environ, MODELPRESS_HOME=f"{tmp}/home", MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        subprocess.run([str(bin_dir / "modelpress"), "train-demo"], env=env, check=True, capture_output=True)
        for i in range(args.repeats):
            for label, extra in (("one target", ["--target", "cpu-x86-int8"]), ("three targets", [])):
                t0 = time.perf_counter()
                proc = subprocess.run([str(bin_dir / "modelpress"), "run", "--recipe", str(RECIPE), "--force", *extra],
                                      env=env, capture_output=True, text=True, cwd=tmp)
                times[label].append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    sys.exit(f"{label} run failed:\n{proc.stderr[-2000:]}")
                tasks[label] = re.findall(r"^  > (\S+)", proc.stderr, re.M)
                print(f"run {i + 1} {label}: {times[label][-1]:.1f} s", file=sys.stderr)
    one, three = statistics.median(times["one target"]), statistics.median(times["three targets"])
    row = {"seconds": times, "median_one": one, "median_three": three, "ratio": three / one,
           "tasks_three_targets": tasks["three targets"], "cpu_flags": cpu_flags(), "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    once = [t for t in ("resolve", "validate-data", "prune") if tasks["three targets"].count(t) == 1]
    print(f"| run | median wall time | vs one target |\n|---|---|---|\n| one target (cpu-x86-int8) | {one:.1f} s | 1.00x |\n"
          f"| three targets (x86 INT8, arm64 INT8, x86 FP32) | {three:.1f} s | {three / one:.2f}x |\n\n"
          f"ran once for three targets: {', '.join(once)}; {os.cpu_count()} CPUs, flags {', '.join(row['cpu_flags'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
