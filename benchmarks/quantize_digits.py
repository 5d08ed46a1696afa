"""Quantization of the digits CNN, every mode and calibration method, against FP32 in one run.

    python benchmarks/quantize_digits.py [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "quantize_digits.json"

VARIANTS = [
    ("static qoperator minmax (x86 default)", "cpu-x86-int8", {}),
    ("static qoperator entropy", "cpu-x86-int8", {"calibration_method": "entropy"}),
    ("static qoperator percentile", "cpu-x86-int8", {"calibration_method": "percentile"}),
    ("static qdq minmax", "cpu-x86-int8", {"format": "qdq"}),
    ("static qdq entropy", "cpu-x86-int8", {"format": "qdq", "calibration_method": "entropy"}),
    ("static qdq percentile", "cpu-x86-int8", {"format": "qdq", "calibration_method": "percentile"}),
    ("static qdq S8S8 symmetric (TensorRT default), run on CPU", "nvidia-trt-int8", {}),
    ("QAT 3 epochs, then static qoperator minmax", "cpu-x86-int8", {"qat": {"epochs": 3}}),
    ("dynamic (ConvInteger)", "cpu-x86-int8", {"mode": "dynamic"}),
    ("fp16 (CUDA default), run on CPU", "nvidia-cuda-fp16", {}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="timed runs per model and batch size")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    from modelpress.components.evaluate.measure import EvaluateConfig, evaluate
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.models.train import TrainConfig, accuracy, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    data = load_dataset("sklearn-digits")
    spec, cfg = DigitsCNNSpec(), TrainConfig()
    module = build_model(spec, seed=cfg.seed)
    train(module, data, cfg, progress=lambda s: None)
    print(f"trained digits CNN: torch test accuracy {accuracy(module, data.x_test, data.y_test):.4f}",
          file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        torch_dir = artifacts.save_torch(tmp_path / "torch", module, spec,
                                         artifacts.TensorSpec(shape=(1, 8, 8)), "sklearn-digits")
        fp32 = export_onnx(torch_dir, tmp_path / "fp32")
        technique = get_technique("quantize")
        for i, (label, target_name, overrides) in enumerate(VARIANTS):
            target = parse_target(target_name)
            t0 = time.perf_counter()
            config = QuantizeConfig(**overrides)
            source = fp32
            if config.qat is not None:  # same path as the pipeline: qat -> export -> quantize
                prepared = get_technique("qat").apply(torch_dir, data, config, target, tmp_path / f"p{i}")
                source = export_onnx(prepared.model_dir, tmp_path / f"pe{i}")
            result = technique.apply(source, data, config, target, tmp_path / f"q{i}")
            seconds = time.perf_counter() - t0
            # Latency on the CPU provider for every row, so all ratios share one baseline.
            ev = evaluate(result.model_dir, fp32, data, parse_target("cpu-x86-int8"),
                          EvaluateConfig(latency_runs=args.runs, batch_sizes=(1, 64)))
            rows.append({
                "variant": label, "target": target_name, "settings": result.notes["settings"],
                "quantize_seconds": seconds,
                "size_bytes": ev.candidate["size_bytes"], "fp32_size_bytes": ev.source["size_bytes"],
                "size_ratio": ev.comparison["size_ratio"],
                "accuracy": ev.candidate["accuracy"], "fp32_accuracy": ev.source["accuracy"],
                "top1_agreement": ev.comparison["top1_agreement"],
                "latency_ratio_b1": ev.comparison["latency_ratio_b1"],
                "latency_ratio_b64": ev.comparison["latency_ratio_b64"],
                "fp32_latency_p50_ms_b1": ev.source["latency_p50_ms_b1"],
                "fp32_latency_p50_ms_b64": ev.source["latency_p50_ms_b64"],
                "environment": ev.environment,
            })
            print(f"  {label}: done", file=sys.stderr)

    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, default=str))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def table(rows: list[dict]) -> str:
    """The results as Markdown (also the README's block, `benchmarks/readme_tables.py`)."""
    env = rows[0]["environment"]
    lines = [f"Digits CNN ({rows[0]['fp32_size_bytes'] / 1024:.1f} KiB FP32 ONNX, accuracy "
             f"{rows[0]['fp32_accuracy'] * 100:.2f}%), onnxruntime {env['onnxruntime']}, "
             f"CPU flags: {', '.join(env['cpu_flags'])}; latency ratios vs FP32 on CPUExecutionProvider", "",
             "| variant | KiB | size vs FP32 | accuracy | vs FP32 | agreement | latency b1 | latency b64 |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['size_bytes'] / 1024:.1f} | {r['size_ratio']:.2f}x | "
              f"{r['accuracy'] * 100:.2f}% | {(r['accuracy'] - r['fp32_accuracy']) * 100:+.2f} pt | "
              f"{r['top1_agreement'] * 100:.1f}% | {r['latency_ratio_b1']:.2f}x | {r['latency_ratio_b64']:.2f}x |"
              for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
