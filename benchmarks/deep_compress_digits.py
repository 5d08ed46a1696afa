"""Deep compression on digits, stage by stage, next to Han et al. (2016).

    python benchmarks/deep_compress_digits.py

For the MLP 64-300-100-10 (LeNet-300-100's widths), a LeNet-5-style CNN (LeNet-5's widths
and 5x5 kernels on 8x8 digits) and the smaller demo CNN: train the source (seed 0), run the
deep_compress technique, and print the paper-style table: bytes after pruning, after
weight sharing and after Huffman coding, each with its ratio to the FP32 parameters and
its test accuracy. The last row is the real file, decoded and checked bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "deep_compress_digits.json"

# name -> (paper row, models.zoo.PRESETS key, deep_compress config)
CASES = {
    "MLP 64-300-100-10": ("lenet-300-100", "mlp-300-100", {
        "prune": {"method": "unstructured", "ratio": 0.935, "schedule": {"steps": 10}},
        "bits": {"linear": 5}}),
    "LeNet-5-style CNN (conv20-conv50-fc500-fc10, 5x5)": ("lenet-5", "lenet5", {
        "prune": {"method": "unstructured", "ratio": 0.94, "schedule": {"steps": 20, "epochs_per_step": 3}},
        "bits": {"conv": 8, "linear": 5}}),  # the paper's bits
    "demo CNN (conv16-conv32-fc64-fc10, 3x3, BatchNorm)": ("lenet-5", "digits-cnn", {
        "prune": {"method": "unstructured", "ratio": 0.9, "schedule": {"steps": 10}},
        "bits": {"conv": 4, "linear": 4}, "index_bits": 4}),
}
PAPER = {"lenet-300-100": "LeNet-300-100 on MNIST: 40x, 1.64% -> 1.58% error",
         "lenet-5": "LeNet-5 on MNIST: 39x, 0.80% -> 0.74% error"}


def render(results: list[dict]) -> str:
    """The README's Markdown: seed 0's stage table per case, then a line over all seeds."""
    out = []
    for r in results:
        first = r["runs"][0]
        src = first["stages"][0]["test_accuracy"]
        out += [f"**{r['model']}** (paper: {PAPER[r['paper']]}), seed 0", "",
                "| stage | bytes | vs FP32 | test accuracy | vs FP32 |", "|---|---|---|---|---|"]
        out += [f"| {s['stage']} | {s['bytes']:,} | {s['ratio']:.1f}x | {s['test_accuracy'] * 100:.2f}% | "
                f"{(s['test_accuracy'] - src) * 100:+.2f} pt |" for s in first["stages"]]
        parts = ", ".join(f"{k} {v:,}" for k, v in first["file_bytes"].items() if k != "total")
        ratios = [run["stages"][-1]["ratio"] for run in r["runs"]]
        deltas = [(run["stages"][-1]["test_accuracy"] - run["stages"][0]["test_accuracy"]) * 100 for run in r["runs"]]
        out += ["", f"file bytes: {parts}", "",
                f"{len(r['runs'])} seeds: file {min(ratios):.1f}x to {max(ratios):.1f}x; accuracy vs FP32 "
                f"mean {sum(deltas) / len(deltas):+.2f} pt, best {max(deltas):+.2f}, worst {min(deltas):+.2f}", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    ap.add_argument("--only", help="run only the cases whose name contains this text (e.g. lenet)")
    ap.add_argument("--seeds", type=int, default=5, help="source models per case, seeds 0..N-1 (default 5); "
                    "the table is seed 0, the summary line covers all")
    ap.add_argument("--report", action="store_true", help="print the tables from the results file; run nothing")
    args = ap.parse_args()
    if args.report:
        print(render(json.loads(args.out.read_text())))
        return 0

    from modelpress.components.deep_compress.deep_compress import compress
    from modelpress.components.deep_compress.settings import DeepCompressConfig
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import load_dataset
    from modelpress.models.train import TrainConfig, train
    from modelpress.models.zoo import PRESETS, build_model

    data = load_dataset("sklearn-digits")
    results = []
    for name, (paper, arch, body) in CASES.items():
        if args.only and args.only.lower() not in name.lower():
            continue
        spec = PRESETS[arch]
        config = parse_config(DeepCompressConfig, body, name)
        runs = []
        for seed in range(args.seeds):
            module = build_model(spec, seed=seed)
            train(module, data, TrainConfig(seed=seed), progress=lambda s: None)
            t0 = time.perf_counter()
            _, _, _, rows, sizes = compress(module, spec, artifacts.TensorSpec(shape=(1, 8, 8)), data, config,
                                            say=lambda s: None)
            runs.append({"seed": seed, "stages": rows, "file_bytes": sizes, "seconds": time.perf_counter() - t0})
            delta = (rows[-1]["test_accuracy"] - rows[0]["test_accuracy"]) * 100
            print(f"  {name} seed {seed}: {rows[-1]['ratio']:.1f}x, {delta:+.2f} pt in {runs[-1]['seconds']:.0f} s",
                  file=sys.stderr)
        results.append({"model": name, "paper": paper, "architecture": spec.model_dump(mode="json"),
                        "config": config.model_dump(mode="json"), "runs": runs})

    print(render(results))
    if args.only and args.out == RESULTS:
        print("--only: not overwriting the full results file (pass --out to keep these)", file=sys.stderr)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
