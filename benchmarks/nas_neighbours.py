"""Neighbours of the hand-made x0.45 student, each distilled in full over 3 seeds: do they differ more than seeds do?

    python benchmarks/nas_neighbours.py [--seeds 0 1 2]

Context for `nas_digits.py`: NAS must find an architecture that dominates x0.45 (test accuracy at
least as high, latency and parameters no higher). Here the reference and a dozen nearby digits-cnn
shapes from the NAS space are each distilled from the demo CNN with the distill step's full budget,
once per seed, and scored on the test split. Latency is static INT8 on the CPU provider at batch 64,
every model timed taking turns in one process. Writes benchmarks/results/nas_neighbours.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "nas_neighbours.json"
# (channels, kernels, hidden, activation): around x0.45's (7, 14), k3, 29, relu.
NEIGHBOURS = [((6, 14), (3, 3), 24, "relu"), ((6, 12), (5, 3), 32, "relu"), ((7, 14), (3, 3), 29, "hardswish"),
              ((6, 12), (3, 3), 32, "hardswish"), ((8, 12), (5, 3), 24, "relu"), ((6, 10, 16), (3, 3, 3), 32, "relu"),
              ((6, 12, 16), (5, 3, 3), 32, "relu"), ((8, 12, 16), (3, 3, 3), 24, "relu"),
              ((6, 14), (5, 3), 24, "relu"), ((6, 12, 24), (3, 3, 3), 16, "relu"),
              ((4, 12, 16), (5, 3, 3), 32, "relu"), ((6, 14), (3, 3), 20, "hardswish")]
REFERENCE = "x0.45 (hand-made)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    args = ap.parse_args()

    import torch

    from modelpress.components.distill.distill import distill
    from modelpress.components.distill.settings import DistillConfig
    from modelpress.components.distill.teacher import Teacher
    from modelpress.components.evaluate.measure import cpu_flags
    from modelpress.components.nas import search
    from modelpress.components.nas.settings import NasConfig
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import load_dataset
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.models.train import TrainConfig, accuracy, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    torch.set_num_threads(1)
    data = load_dataset("sklearn-digits")
    spec = DigitsCNNSpec()
    teacher_module = build_model(spec, seed=0)
    train(teacher_module, data, TrainConfig(), progress=lambda s: None)
    students = {REFERENCE: {"family": "digits-cnn", "width": 0.45}}
    for channels, kernels, hidden, act in NEIGHBOURS:
        students[f"{'-'.join(map(str, channels))} k{''.join(map(str, kernels))} h{hidden} {act}"] = {
            "architecture": {"family": "digits-cnn", "channels": channels, "kernels": kernels, "hidden": hidden,
                             "activation": act}}

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = Teacher(artifacts.save_torch(root / "teacher", teacher_module, spec,
                                               artifacts.TensorSpec(shape=(1, 8, 8))))
        ctx = search.TrialContext(teacher=teacher, data=data, config=parse_config(NasConfig, {}, "bench"),
                                  target=parse_target("cpu-x86-int8"), batch_size=64,
                                  quantize=get_technique("quantize").Config(), constraints=(), input_shape=(1, 8, 8),
                                  num_classes=10)
        paths = []
        for i, (name, student) in enumerate(students.items()):
            tests, vals = [], []
            t0 = time.perf_counter()
            for seed in args.seeds:
                cfg = parse_config(DistillConfig, {"student": student, "train": {"seed": seed}}, "bench")
                model, arch, metrics, _ = distill(teacher, data, cfg, (1, 8, 8), say=lambda s: None)
                tests.append(accuracy(model, data.x_test, data.y_test))
                vals.append(metrics["val_accuracy"])
                if seed == args.seeds[0]:  # latency does not depend on the weights
                    saved = artifacts.save_torch(root / f"m{i}", model, arch, artifacts.TensorSpec(shape=(1, 8, 8)))
                    paths.append(search.as_target_runs(saved, ctx, root / f"x{i}"))
                    params = sum(p.numel() for p in model.parameters())
            rows[name] = {"params": params, "test_accuracy": tests, "val_accuracy": vals}
            print(f"{name}: {params} params, test {[round(a, 4) for a in tests]} "
                  f"({(time.perf_counter() - t0) / len(args.seeds):.1f} s per training)", file=sys.stderr, flush=True)
        for name, ms in zip(students, search.time_side_by_side(paths, ctx, runs=1000)):
            rows[name]["latency_ms_b64"] = ms

    ref = rows[REFERENCE]
    print("| student | params | test accuracy (mean, min-max) | vs x0.45 | latency b64 | vs x0.45 | dominates |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        mean, ref_mean = statistics.mean(r["test_accuracy"]), statistics.mean(ref["test_accuracy"])
        r["dominates_on_mean"] = name != REFERENCE and mean >= ref_mean and r["params"] <= ref["params"] \
            and r["latency_ms_b64"] <= ref["latency_ms_b64"]
        print(f"| {name} | {r['params']:,} | {mean * 100:.2f}% ({min(r['test_accuracy']) * 100:.2f}-"
              f"{max(r['test_accuracy']) * 100:.2f}) | {(mean - ref_mean) * 100:+.2f} pt | {r['latency_ms_b64']:.3f} ms | "
              f"{r['latency_ms_b64'] / ref['latency_ms_b64']:.2f}x | {'-' if name == REFERENCE else r['dominates_on_mean']} |")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python benchmarks/nas_neighbours.py", "seeds": args.seeds,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
                    "cores": os.cpu_count(), "torch": torch.__version__},
        "latency": "static INT8 on the CPU provider, batch 64, fastest of 1000 runs, all models taking turns",
        "students": rows}, indent=2))
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
