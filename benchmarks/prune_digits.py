"""Pruning on digits: structured 50% of the CNN's channels, 90% unstructured sparsity of the MLP.

    python benchmarks/prune_digits.py [--seeds 3] [--runs 300]

For each case and seed: train the source (seeded), prune it with the same technique the
pipeline runs, and measure source and pruned side by side: parameters, MACs, weights file,
ONNX file, test accuracy, and latency in torch and in ONNX Runtime (runs alternate between
the two models). Latency is measured on the first seed only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "prune_digits.json"

CASES = [
    {
        "case": "CNN, structured, 50% of channels",
        "model": "cnn",
        "prune": {"method": "structured", "ratio": 0.5},
    },
    {
        "case": "CNN, structured, 50% of channels, fine-tuned with distillation from the source",
        "model": "cnn",
        "prune": {"method": "structured", "ratio": 0.5, "distill": {}},
    },
    {
        "case": "CNN, structured, 50% of channels, one shot (no gradual schedule)",
        "model": "cnn",
        "prune": {"method": "structured", "ratio": 0.5, "schedule": {"steps": 1}},
    },
    {
        "case": "CNN, structured, sensitivity-chosen ratios (MACs <= 40%)",
        "model": "cnn",
        "prune": {"method": "structured", "sensitivity": {"objective": "macs", "keep": 0.4,
                                                          "max_accuracy_drop": 1.0}},
    },
    {
        "case": "MLP 64-300-100-10, unstructured, 90% global",
        "model": "mlp",
        "prune": {"method": "unstructured", "ratio": 0.9},
    },
]


def _torch_latency(models: dict, x, runs: int) -> dict[str, float]:
    """Median ms per model; runs alternate between models so drift hits both."""
    import torch

    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for i in range(runs + 10):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(x)
                if i >= 10:
                    times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def run_case(case: dict, seed: int, with_latency: bool, runs: int, tmp: Path) -> dict:
    import torch

    from modelpress.components.evaluate.measure import EvaluateConfig, evaluate
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.components.prune.settings import PruneConfig
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import load_dataset
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.models.train import TrainConfig, accuracy, train
    from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model

    data = load_dataset("sklearn-digits")
    spec, shape = (DigitsCNNSpec() if case["model"] == "cnn" else MLPSpec()), (1, 8, 8)
    module = build_model(spec, seed=seed)
    train(module, data, TrainConfig(seed=seed), progress=lambda s: None)
    src = artifacts.save_torch(tmp / "src", module, spec, artifacts.TensorSpec(shape=shape), "sklearn-digits")

    body = {**case["prune"], "finetune": {"seed": seed}}  # other finetune keys keep their defaults
    config = parse_config(PruneConfig, body, case["case"])
    t0 = time.perf_counter()
    result = get_technique("prune").apply(src, data, config, parse_target("cpu-x86-fp32"), tmp / "pruned")
    seconds = time.perf_counter() - t0
    pruned, _ = artifacts.load_torch(result.model_dir)
    m = result.metrics
    row = {
        "case": case["case"], "seed": seed, "prune_seconds": seconds,
        "params": m["params"], "params_before": m["params_before"], "nonzero_params": m["nonzero_params"],
        "macs": m["macs"], "macs_before": m["macs_before"], "macs_ratio": m["macs_ratio"],
        "weights_file_bytes": m["file_bytes"], "weights_file_bytes_before": m["file_bytes_before"],
        "accuracy_before": accuracy(module, data.x_test, data.y_test),
        "accuracy": accuracy(pruned, data.x_test, data.y_test),
        "notes": {k: v for k, v in result.notes.items() if k != "config"},
    }
    if "weight_sparsity" in m:
        row["weight_sparsity"] = m["weight_sparsity"]
    onnx_src = export_onnx(src, tmp / "src_onnx")
    onnx_pruned = export_onnx(result.model_dir, tmp / "pruned_onnx")
    if with_latency:
        ev = evaluate(onnx_pruned, onnx_src, data, parse_target("cpu-x86-fp32"),
                      EvaluateConfig(latency_runs=runs, batch_sizes=(1, 64, 256)))
        row["onnx_bytes"], row["onnx_bytes_before"] = ev.candidate["size_bytes"], ev.source["size_bytes"]
        row["environment"] = ev.environment
        for b in (1, 64, 256):
            row[f"ort_ms_b{b}"] = ev.candidate[f"latency_p50_ms_b{b}"]
            row[f"ort_ms_b{b}_before"] = ev.source[f"latency_p50_ms_b{b}"]
            x = torch.from_numpy(data.x_test[:1].repeat(b, 0))
            t = _torch_latency({"before": module.eval(), "after": pruned.eval()}, x, runs)
            row[f"torch_ms_b{b}"], row[f"torch_ms_b{b}_before"] = t["after"], t["before"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6, help="seeds per case (accuracy is averaged)")
    ap.add_argument("--runs", type=int, default=300, help="timed runs per model and batch size")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    rows = []
    for case in CASES:
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(run_case(case, seed, seed == 0, args.runs, Path(tmp)))
            r = rows[-1]
            print(f"  {case['case']} seed {seed}: accuracy {r['accuracy_before']:.4f} -> {r['accuracy']:.4f}, "
                  f"{r['prune_seconds']:.1f} s", file=sys.stderr)

    env = rows[0]["environment"]
    print(f"onnxruntime {env['onnxruntime']}, CPU flags: {', '.join(env['cpu_flags'])}; "
          f"test split, {args.seeds} seeds (accuracy: mean; latency: seed 0, p50, side by side)\n")
    print("| case | params | MACs | weights file | test accuracy (mean) | worst seed | "
          "ORT b1 | ORT b64 | ORT b256 | torch b64 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for case in CASES:
        rs = [r for r in rows if r["case"] == case["case"]]
        first = rs[0]
        before = statistics.mean(r["accuracy_before"] for r in rs)
        after = statistics.mean(r["accuracy"] for r in rs)
        worst = min(r["accuracy"] - r["accuracy_before"] for r in rs)
        nz = first["nonzero_params"] if "weight_sparsity" in first else first["params"]
        lat = {b: first[f"ort_ms_b{b}"] / first[f"ort_ms_b{b}_before"] for b in (1, 64, 256)}
        torch64 = first["torch_ms_b64"] / first["torch_ms_b64_before"]
        summary.append({"case": case["case"], "accuracy_before_mean": before, "accuracy_mean": after,
                        "worst_seed_delta": worst, "ort_latency_ratio": lat, "torch_latency_ratio_b64": torch64})
        print(f"| {case['case']} | {int(nz):,} of {int(first['params_before']):,} "
              f"({nz / first['params_before']:.2f}x) | {first['macs_ratio']:.2f}x | "
              f"{first['weights_file_bytes'] / 1024:.1f} KiB ({first['weights_file_bytes'] / first['weights_file_bytes_before']:.2f}x) | "
              f"{after * 100:.2f}% ({(after - before) * 100:+.2f} pt) | {worst * 100:+.2f} pt | "
              f"{lat[1]:.2f}x | {lat[64]:.2f}x | {lat[256]:.2f}x | {torch64:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, default=str))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
