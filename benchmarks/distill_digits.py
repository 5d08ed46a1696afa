"""Distillation on digits: students taught by the demo CNN against the same students on labels alone.

    python benchmarks/distill_digits.py [--seeds 5]

The teacher is the demo CNN (seed 0, `modelpress demo`'s training). Every student is trained
with the distill technique's own training loop and budget; "labels only" is the same loop with
alpha = 0 (no soft loss), so the only difference is what the student learns from. Test
accuracy on the 360 held-out images, mean over seeds, with the error count Hinton et al. report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "distill_digits.json"

STUDENTS = {
    "CNN x0.45 (7-14 ch, 29 hidden)": {"family": "digits-cnn", "width": 0.45},
    "CNN x0.25 (4-8 ch, 16 hidden)": {"family": "digits-cnn", "width": 0.25},
}
METHODS = {
    "labels only (alpha 0)": {"alpha": 0.0},
    "distilled (T 4, alpha 0.9)": {},
    "distilled (T 2, alpha 0.5)": {"temperature": 2.0, "alpha": 0.5},
    "distilled + hint on the 2nd conv": {"hints": [{"teacher_layer": "4", "student_layer": "4"}]},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="student seeds per row (>= 3)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    import tempfile

    from modelpress.components.distill.distill import distill
    from modelpress.components.distill.settings import DistillConfig
    from modelpress.components.distill.teacher import Teacher
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import load_dataset
    from modelpress.models.train import TrainConfig, accuracy, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    data = load_dataset("sklearn-digits")
    spec = DigitsCNNSpec()
    module = build_model(spec, seed=0)
    train(module, data, TrainConfig(), progress=lambda s: None)
    teacher_acc = accuracy(module, data.x_test, data.y_test)
    teacher_params = sum(p.numel() for p in module.parameters())
    print(f"teacher: digits CNN, {teacher_params} params, test accuracy {teacher_acc:.4f}", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Teacher(artifacts.save_torch(Path(tmp) / "t", module, spec, artifacts.TensorSpec(shape=(1, 8, 8))))
        for student_name, student in STUDENTS.items():
            for method, extra in METHODS.items():
                accs, params = [], 0
                for seed in range(args.seeds):
                    cfg = parse_config(DistillConfig, {"student": student, **extra, "train": {"seed": seed}}, "bench")
                    model, _, metrics, _ = distill(teacher, data, cfg, (1, 8, 8), say=lambda s: None)
                    accs.append(accuracy(model, data.x_test, data.y_test))
                    params = int(metrics["student_params"])
                row = {"student": student_name, "method": method, "params": params,
                       "params_ratio": params / teacher_params, "accuracies": accs,
                       "mean": statistics.mean(accs), "stdev": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                       "mean_errors": statistics.mean(round((1 - a) * len(data.y_test)) for a in accs)}
                rows.append(row)
                print(f"  {student_name} / {method}: {[round(a, 4) for a in accs]}", file=sys.stderr)

    n = len(data.y_test)
    print(f"Teacher: digits CNN, {teacher_params:,} params, test accuracy {teacher_acc * 100:.2f}% "
          f"({round((1 - teacher_acc) * n)} errors of {n}). Students: {args.seeds} seeds each, same budget "
          "(up to 100 epochs, early stopping on val).\n")
    print("| student | params vs teacher | training | test accuracy (mean ± sd) | vs teacher | errors (mean) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['student']} | {r['params']:,} ({r['params_ratio']:.0%}) | {r['method']} | "
              f"{r['mean'] * 100:.2f}% ± {r['stdev'] * 100:.2f} | {(r['mean'] - teacher_acc) * 100:+.2f} pt | "
              f"{r['mean_errors']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"teacher_accuracy": teacher_acc, "teacher_params": teacher_params,
                                    "seeds": args.seeds, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
