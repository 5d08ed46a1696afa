"""Deep compression on digits, stage by stage, next to Han et al. (2016).

    python benchmarks/deep_compress_digits.py

For the MLP 64-300-100-10 and the digits CNN: train the source (seed 0), run the
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

CASES = {
    "MLP 64-300-100-10": ("mlp", {"prune": {"method": "unstructured", "ratio": 0.935, "schedule": {"steps": 6}},
                                  "bits": {"linear": 5}}),
    "digits CNN (conv16-conv32-fc64-fc10)": ("cnn", {
        "prune": {"method": "unstructured", "ratio": 0.9, "schedule": {"steps": 6}},
        "bits": {"conv": 4, "linear": 4}, "index_bits": 4}),
}
PAPER = {"mlp": "LeNet-300-100 on MNIST: 40x, 1.64% -> 1.58% error",
         "cnn": "LeNet-5 on MNIST: 39x, 0.80% -> 0.74% error"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    from modelpress.components.deep_compress.deep_compress import compress
    from modelpress.components.deep_compress.settings import DeepCompressConfig
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import load_dataset
    from modelpress.models.train import TrainConfig, train
    from modelpress.models.zoo import DigitsCNNSpec, MLPSpec, build_model

    data = load_dataset("sklearn-digits")
    results = []
    for name, (kind, body) in CASES.items():
        spec = DigitsCNNSpec() if kind == "cnn" else MLPSpec()
        module = build_model(spec, seed=0)
        train(module, data, TrainConfig(), progress=lambda s: None)
        config = parse_config(DeepCompressConfig, body, name)
        t0 = time.perf_counter()
        _, _, blob, rows, sizes = compress(module, spec, artifacts.InputSpec(shape=(1, 8, 8)), data, config,
                                           say=lambda s: None)
        results.append({"model": name, "kind": kind, "config": config.model_dump(mode="json"), "stages": rows,
                        "file_bytes": sizes, "seconds": time.perf_counter() - t0})
        print(f"  {name}: {rows[-1]['ratio']:.1f}x in {results[-1]['seconds']:.0f} s", file=sys.stderr)

    for r in results:
        src = r["stages"][0]["test_accuracy"]
        print(f"**{r['model']}** (paper: {PAPER[r['kind']]})\n")
        print("| stage | bytes | vs FP32 | test accuracy | vs FP32 |")
        print("|---|---|---|---|---|")
        for s in r["stages"]:
            print(f"| {s['stage']} | {s['bytes']:,} | {s['ratio']:.1f}x | {s['test_accuracy'] * 100:.2f}% | "
                  f"{(s['test_accuracy'] - src) * 100:+.2f} pt |")
        parts = ", ".join(f"{k} {v:,}" for k, v in r["file_bytes"].items() if k != "total")
        print(f"\nfile bytes: {parts}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
