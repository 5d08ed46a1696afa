"""Auto-tune on the demo CNN against the target's defaults and the peers' own defaults, timed side by side.

    python benchmarks/quantize_tune_digits.py [--rounds 5] [--runs 300] [--peers-python .venv-peers/bin/python]

The demo CNN (`modelpress demo`'s training) is exported once. Then, from the same FP32 file and the
same 256 calibration samples (the training split's first, as the quantize step takes them):
- modelpress with cpu-x86-int8's defaults, and with `quantize.tune` (objective latency, then size;
  the default gate: accuracy at most 1 point below FP32, checked on the validation split);
- ONNX Runtime's `quantize_static` with its defaults;
- Olive's OnnxStaticQuantization and NNCF's `quantize` with theirs, run by `benchmarks/peers/quantize_peers.py`
  in their own virtualenv (`make peers-venv`); without it their rows say so.
Every model is scored on the test split and timed taking turns with FP32 at batch 1 and 64, in
`--rounds` rounds of `--runs` runs: each ratio is the median over rounds, with its range.
Writes benchmarks/results/quantize_tune_digits.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "quantize_tune_digits.json"
PEERS = ("olive", "nncf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (each ratio is the median over them)")
    ap.add_argument("--runs", type=int, default=300, help="timed runs per model, batch size and round")
    ap.add_argument("--peers-python", type=Path, default=HERE.parent / ".venv-peers" / "bin" / "python",
                    help="the Python of the peers' virtualenv (make peers-venv)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    import numpy as np

    from modelpress.components.evaluate.measure import all_outputs, machine, session
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.components.quantize.calibration import ListReader, calibration_batches
    from modelpress.components.quantize.settings import QuantizeConfig
    from modelpress.components.quantize.tune import TuneContext
    from modelpress.core import artifacts
    from modelpress.core.data import load_dataset
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.models.train import TrainConfig, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    data = load_dataset("sklearn-digits")
    spec, cfg = DigitsCNNSpec(), TrainConfig()
    module = build_model(spec, seed=cfg.seed)
    train(module, data, cfg, progress=lambda s: None)
    target, technique = parse_target("cpu-x86-int8"), get_technique("quantize")
    rows: dict[str, dict] = {"FP32": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fp32 = export_onnx(artifacts.save_torch(root / "torch", module, spec, artifacts.TensorSpec(shape=(1, 8, 8)),
                                                "sklearn-digits"), root / "fp32")
        files = {"FP32": artifacts.onnx_file(fp32)}
        feeds = calibration_batches(data, "train", 256, artifacts.read_manifest(fp32).inputs)
        calib = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}

        def timed(name: str, make) -> None:
            t0 = time.perf_counter()
            files[name], rows[name] = make()
            rows[name]["quantize_seconds"] = time.perf_counter() - t0
            say(f"{name}: {rows[name]['quantize_seconds']:.2f} s")

        def modelpress(section: dict, folder: str):
            config = QuantizeConfig(**section)
            result = technique.apply(fp32, data, config, target, root / folder, tuning=TuneContext(say=say))
            return artifacts.onnx_file(result.model_dir), {"settings": result.notes["settings"],
                                                           "tune": result.notes.get("tune")}

        timed("modelpress, cpu-x86-int8 defaults", lambda: modelpress({}, "default"))
        timed("modelpress tune, objective latency", lambda: modelpress({"tune": {"objective": "latency"}}, "tl"))
        timed("modelpress tune, objective size", lambda: modelpress({"tune": {"objective": "size"}}, "ts"))

        def ort_defaults():
            from onnxruntime.quantization import quantize_static

            out = root / "ort.onnx"
            quantize_static(files["FP32"], out, ListReader(feeds))
            return out, {"settings": "quantize_static defaults: QDQ, per-tensor, U8S8, MinMax"}

        timed("ONNX Runtime quantize_static defaults", ort_defaults)
        peers = run_peers(args.peers_python, files["FP32"], calib, root / "peers", say)
        add_peers(peers, {"olive": "Olive OnnxStaticQuantization defaults", "nncf": "NNCF quantize defaults"},
                  root / "peers", files, rows)

        test = data.get("test")
        output = session(files["FP32"], "CPUExecutionProvider", None).get_outputs()[0].name
        sessions = {name: session(path, "CPUExecutionProvider", None) for name, path in files.items()}
        for name, sess in sessions.items():
            pred = all_outputs(sess, test.inputs, output).argmax(1)
            rows.setdefault(name, {}).update(accuracy=float((pred == test.labels).mean()),
                                             size_bytes=files[name].stat().st_size)
        for b in (1, 64):
            feed = {k: np.ascontiguousarray(v[np.arange(b) % len(v)]) for k, v in test.inputs.items()}
            timed_rounds(sessions, feed, args.rounds, args.runs, 20, rows, f"b{b}")
            say(f"timed batch {b}")

    command = "python benchmarks/quantize_tune_digits.py" + (f" --rounds {args.rounds}" if args.rounds != 5 else "") \
        + (f" --runs {args.runs}" if args.runs != 300 else "")
    result = {"command": command,
              "machine": machine(),
              "rows": rows}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    say(f"wrote {args.out}")
    return 0


def add_peers(peers: dict, labels: dict[str, str], folder: Path, files: dict, rows: dict) -> None:
    """Each peer's file and row under its label; a peer that failed gets a row with its one-line error."""
    for tool, label in labels.items():
        info = peers.get(tool, {"error": "not run"})
        if "error" in info:
            rows[label] = {"error": info["error"]}
            continue
        files[label] = folder / f"{tool}.onnx"
        rows[label] = {"settings": info.get("settings"), "version": info.get("version"),
                       "quantize_seconds": info.get("seconds")}


def timed_rounds(sessions: dict, feed: dict, rounds: int, runs: int, warmup: int, rows: dict, batch: str) -> None:
    """Every model timed taking turns with FP32, `rounds` times: each row gets the median ratio and its range."""
    from modelpress.components.evaluate.measure import time_interleaved

    ratios: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        lat = time_interleaved(sessions, feed, runs, warmup)
        for name in sessions:
            ratios[name].append(lat[name][0] / lat["FP32"][0])
        rows["FP32"].setdefault(f"latency_p50_ms_{batch}", []).append(lat["FP32"][0])
    for name, values in ratios.items():
        rows[name][f"latency_ratio_{batch}"] = statistics.median(values)
        rows[name][f"latency_ratio_{batch}_range"] = [min(values), max(values)]


def run_peers(python: Path, model: Path, calib: dict, out: Path, say, mode: str = "static") -> dict:
    """Olive's and NNCF's own defaults (`mode`: static or dynamic), run in their virtualenv;
    {tool: {"error": ...}} when they cannot run."""
    import numpy as np

    if not python.is_file():
        return {t: {"error": f"no peers virtualenv at {python} (make peers-venv)"} for t in PEERS}
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "calib.npz", **calib)
    proc = subprocess.run([str(python), str(HERE / "peers" / "quantize_peers.py"), "--model", str(model),
                           "--calib", str(out / "calib.npz"), "--out", str(out), "--mode", mode],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (out / "peers.json").is_file():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {t: {"error": f"quantize_peers.py failed: {tail}"} for t in PEERS}
    found = json.loads((out / "peers.json").read_text())
    for tool, info in found.items():
        say(f"{tool}: " + (info["error"] if "error" in info else f"{info.get('seconds', 0):.2f} s"))
    return found


def table(result: dict) -> str:
    """The results as Markdown (also the README's block, `benchmarks/readme_tables.py`)."""
    rows, m = result["rows"], result["machine"]
    fp32 = rows["FP32"]
    lines = [f"Demo CNN, FP32 {fp32['size_bytes'] / 1024:.1f} KiB, accuracy {fp32['accuracy'] * 100:.2f}% on the test "
             f"split; onnxruntime {m['onnxruntime']}, {m['cores']} cores, CPU flags: {', '.join(m['cpu_flags'])}. "
             "Latency vs FP32, median over rounds (range), all models taking turns.", "",
             "| variant | KiB | size vs FP32 | accuracy | vs FP32 | latency b1 | latency b64 |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | |")
            continue
        lat = [f"{r[f'latency_ratio_b{b}']:.2f}x ({r[f'latency_ratio_b{b}_range'][0]:.2f}-"
               f"{r[f'latency_ratio_b{b}_range'][1]:.2f})" for b in (1, 64)]
        lines.append(f"| {name} | {r['size_bytes'] / 1024:.1f} | {r['size_bytes'] / fp32['size_bytes']:.2f}x | "
                     f"{r['accuracy'] * 100:.2f}% | {(r['accuracy'] - fp32['accuracy']) * 100:+.2f} pt | "
                     f"{lat[0]} | {lat[1]} |")
    tuned = rows.get("modelpress tune, objective latency", {})
    peers = {n: r for n, r in rows.items() if "error" not in r and not n.startswith(("modelpress", "FP32"))}
    if "latency_ratio_b64" in tuned and peers:
        best, r = min(peers.items(), key=lambda kv: kv[1]["latency_ratio_b64"])
        lines += ["", f"Fastest peer at batch 64: {best} ({r['latency_ratio_b64']:.2f}x FP32, "
                      f"{r['accuracy'] * 100:.2f}%). modelpress tune (latency) runs at "
                      f"{tuned['latency_ratio_b64'] / r['latency_ratio_b64']:.2f}x its latency with "
                      f"{(tuned['accuracy'] - r['accuracy']) * 100:+.2f} pt accuracy; kept: "
                      f"{(tuned.get('tune') or {}).get('chosen_label', '?')}."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
