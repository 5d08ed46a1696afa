"""all-MiniLM-L6-v2 through the modelpress pipeline: the README's MiniLM numbers.

    HF_HUB_OFFLINE=1 python benchmarks/minilm_pipeline.py [--out benchmarks/results/minilm_pipeline.json]

Logs the model (ONNX, dynamic batch and sequence axes, two int64 inputs, external weights) and
320 tokenized sentences into a throwaway MLflow store with examples/byom/sentence_encoder.py,
exactly as a user would, runs `modelpress run --recipe recipes/minilm-dynamic-int8.yaml`, and
reads the registered variant's measurements back from the registry. Sizes, cosine similarity
and latency (side by side, in the same run) are the evaluate step's own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "minilm_pipeline.json"
RECIPE = ROOT / "recipes" / "minilm-dynamic-int8.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    ap.add_argument("--report", action="store_true", help="reprint the table from --out without running")
    args = ap.parse_args()
    if not args.report:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(measure(), indent=2))
        print(f"wrote {args.out}", file=sys.stderr)
    print(table(json.loads(args.out.read_text())))
    return 0


def measure() -> dict:
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="modelpress-minilm-") as tmp:
        env = dict(os.environ, HF_HUB_OFFLINE="1", MODELPRESS_HOME=f"{tmp}/home",
                   MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        bin_dir = Path(sys.executable).parent
        data = subprocess.run([sys.executable, str(ROOT / "examples/byom/sentence_encoder.py")], env=env,
                              check=True, capture_output=True, text=True).stdout.strip()
        print(f"logged the model and {data}", file=sys.stderr)
        subprocess.run([str(bin_dir / "modelpress"), "run", "--recipe", str(RECIPE), "--data", data],
                       env=env, check=True, cwd=tmp, stdout=sys.stderr)
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        mv = client.get_model_version_by_alias("minilm.cpu-x86-int8", "candidate")
        metrics = {k.removeprefix("modelpress.metric."): float(v) for k, v in mv.tags.items()
                   if k.startswith("modelpress.metric.")}
        return {"variant": f"models:/minilm.cpu-x86-int8/{mv.version}", "metrics": metrics,
                "data": json.loads(mv.tags["modelpress.note.data"]),
                "quantize": json.loads(mv.tags["modelpress.note.quantize"])["settings"],
                "environment": json.loads(mv.tags["modelpress.note.evaluation_environment"])}


def table(row: dict) -> str:
    m, env = row["metrics"], row["environment"]
    mib = 1024 * 1024
    rows = row["data"]["data"]["rows"]
    return "\n".join([
        f"all-MiniLM-L6-v2 through `modelpress run`: {rows['test']} test sentences padded to 128 tokens; "
        f"onnxruntime {env['onnxruntime']}, CPU flags: {', '.join(env['cpu_flags'])}",
        "",
        "| variant | MiB | size vs FP32 | cosine to FP32 mean / min | p50 ms b1 | p50 ms b8 | latency vs FP32 b1 / b8 |",
        "|---|---|---|---|---|---|---|",
        f"| FP32 source (mlflow.onnx.log_model) | {m['source_size_bytes'] / mib:.1f} | 1.00x | 1.0 / 1.0 | "
        f"{m['source_latency_p50_ms_b1']:.1f} | {m['source_latency_p50_ms_b8']:.1f} | 1.00x / 1.00x |",
        f"| {row['variant']} (dynamic INT8, per-channel, reduce_range) | {m['size_bytes'] / mib:.1f} | "
        f"{m['size_ratio']:.2f}x | {m['cosine_mean']:.4f} / {m['cosine_min']:.4f} | {m['latency_p50_ms_b1']:.1f} | "
        f"{m['latency_p50_ms_b8']:.1f} | {m['latency_ratio_b1']:.2f}x / {m['latency_ratio_b8']:.2f}x |",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
