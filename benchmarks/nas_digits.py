"""NAS on digits: does the search find a student that dominates the hand-made x0.45 one, and does NSGA-II beat random?

    python benchmarks/nas_digits.py [--seeds 3] [--trials 40] [--no-accuracy-floor]

The teacher is the demo CNN (seed 0, `modelpress demo`'s training). The reference is the
hand-made distillation student, digits-cnn x0.45 (7-14 channels, 29 hidden, 2,961 params).
First the reference is measured exactly as a trial is (short distillation, then latency as
static INT8 on the CPU provider at batch 64, timed against the teacher). For each seed, NSGA-II
and random search get the same budget of trials in the same space, with the reference's
validation accuracy (as a floor), parameters and latency as constraints, so a feasible trial
dominates the reference by the search's own measure (`--no-accuracy-floor`: parameters and latency
only); each picks its most accurate feasible trial. Then,
in one process: the chosen architecture and the reference are distilled in full with the distill
step's budget and that seed, and compared on test accuracy, latency (as the target runs them,
re-measured side by side) and parameters. "Dominates" means accuracy at least as high, latency
and parameters no higher.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "nas_digits.json"
# Conv blocks of plain 3x3 convolutions and ReLU: 5x5 kernels, hardswish and residual convs all cost more
# latency than they save at INT8 on the CPU targets (benchmarks/nas_neighbours.py), so the space leaves them
# out; the head (flatten the grid, or pool each channel) and the widths and depth are searched.
SPACE = {"family": "digits-cnn", "depth": {"min": 1, "max": 3}, "widths": [6, 8, 10, 12, 16, 20],
         "hidden": [12, 16, 24, 32], "kernel_sizes": [3], "activations": ["relu"], "skip": [False],
         "heads": ["flatten", "pool"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="search seeds (>= 1)")
    ap.add_argument("--trials", type=int, default=40, help="trials per search (the budget both samplers get)")
    ap.add_argument("--trial-epochs", type=int, default=15, help="each trial's distillation epochs (default 15)")
    ap.add_argument("--no-accuracy-floor", action="store_true",
                    help="constrain only parameters and latency to the reference's (not its validation accuracy)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()

    import optuna
    import torch

    from modelpress.components.distill.distill import distill
    from modelpress.components.distill.settings import DistillConfig
    from modelpress.components.distill.teacher import Teacher
    from modelpress.components.evaluate.measure import cpu_flags
    from modelpress.components.nas import front, search
    from modelpress.components.nas.settings import NasConfig
    from modelpress.components.nas.space import params_of
    from modelpress.core import artifacts
    from modelpress.core.config import parse_config
    from modelpress.core.data import load_dataset
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.models.train import TrainConfig, accuracy, train
    from modelpress.models.zoo import DigitsCNNSpec, build_model

    torch.set_num_threads(1)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    data = load_dataset("sklearn-digits")
    spec = DigitsCNNSpec()
    module = build_model(spec, seed=0)
    train(module, data, TrainConfig(), progress=lambda s: None)
    target = parse_target("cpu-x86-int8")
    ref_student = {"family": "digits-cnn", "width": 0.45}

    def full(student: dict, seed: int, teacher: Teacher) -> tuple[torch.nn.Module, object]:
        cfg = parse_config(DistillConfig, {"student": student, "train": {"seed": seed}}, "bench")
        model, arch, _, _ = distill(teacher, data, cfg, (1, 8, 8), say=lambda s: None)
        return model, arch

    rows, searches = [], []
    ref = "x0.45 (hand-made)"
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Teacher(artifacts.save_torch(Path(tmp) / "t", module, spec, artifacts.TensorSpec(shape=(1, 8, 8))))
        base = parse_config(NasConfig, {"space": SPACE, "trials": args.trials, "population": 8,
                                          "train": {"epochs": args.trial_epochs}}, "bench")
        ctx0 = search.TrialContext(teacher=teacher, data=data, config=base, target=target, batch_size=64,
                                   quantize=get_technique("quantize").Config(), constraints=(), input_shape=(1, 8, 8),
                                   num_classes=10)
        # The reference measured exactly as a trial is (short distillation, latency against the teacher):
        # its validation accuracy, latency and parameters bound the search, so a feasible trial dominates it
        # by the search's own measure.
        ref_spec = parse_config(DistillConfig, {"student": ref_student}, "bench").student.spec(10)
        ref_space = base.space.model_copy(update={"widths": (7, 14), "hidden": (29,), "kernel_sizes": (3,),
                                                  "skip": (False,), "activations": ("relu",),
                                                  "depth": base.space.depth.model_copy(update={"min": 2, "max": 2})})
        ref_cfg = base.model_copy(update={"space": ref_space, "trials": 1})
        ref_study = search.open_study(optuna.storages.InMemoryStorage(), "ref", ref_cfg)
        ref_study.enqueue_trial(params_of(ref_spec, ref_space))
        with search.with_reference(ref_study, replace(ctx0, config=ref_cfg)) as timed:
            search.run_worker(ref_study, timed, say=lambda m: None)
        (ref_trial,) = front.points(ref_study)
        ref_params, ref_latency = int(ref_trial.params), ref_trial.latency_ms
        # Every study times its trials against the teacher at this one latency, so all share one scale.
        teacher_ms = ref_study.user_attrs[search.LATENCY_KEY + search.TEACHER_LATENCY]
        say(f"reference x0.45 as a trial: val {ref_trial.accuracy:.4f}, {ref_params} params, {ref_latency:.3f} ms at "
            "batch 64 (static INT8, CPU)")
        bounds = [{"metric": "params", "upper": ref_params}, {"metric": "latency_ms", "upper": ref_latency}]
        if not args.no_accuracy_floor:
            bounds.append({"metric": "accuracy", "lower": ref_trial.accuracy})
        constraints = parse_config(NasConfig, {"constraints": bounds}, "b").constraints
        for seed in range(args.seeds):
            for sampler in ("nsga2", "random"):
                cfg = base.model_copy(update={"sampler": sampler, "seed": seed, "select": "most_accurate",
                                              "constraints": constraints})
                ctx = replace(ctx0, config=cfg, constraints=cfg.constraints)
                study = search.open_study(optuna.storages.InMemoryStorage(), f"{sampler}-{seed}", cfg)
                study.set_user_attr(search.LATENCY_KEY + search.TEACHER_LATENCY, teacher_ms)
                t0 = time.perf_counter()
                with search.with_reference(study, ctx) as timed:
                    search.run_worker(study, timed, say=lambda m: None)
                took = time.perf_counter() - t0
                pts = front.points(study)
                feasible = sum(p.feasible for p in pts)
                chosen = front.choose(pts, "most_accurate") if feasible else None
                say(f"seed {seed} {sampler}: {feasible}/{len(pts)} feasible in {took:.0f} s; " + (
                    f"chose trial {chosen.number} (val {chosen.accuracy:.4f}, {chosen.latency_ms:.3f} ms, "
                    f"{int(chosen.params)} params)" if chosen else "nothing to choose"))
                searches.append({"seed": seed, "sampler": sampler, "seconds": took, "trials": len(pts),
                                 "feasible": feasible, "chosen": chosen.architecture if chosen else None,
                                 "chosen_val_accuracy": chosen.accuracy if chosen else None,
                                 "chosen_latency_ms": chosen.latency_ms if chosen else None,
                                 "feasible_val_accuracies": sorted(p.accuracy for p in pts if p.feasible)})
            # Side by side in one process: the reference and both choices, trained in full with this seed,
            # timed taking turns (as the target runs them) so a slow moment of the machine hits all three.
            models = {ref: full(ref_student, seed, teacher)}
            for s in searches[-2:]:
                if s["chosen"] is not None:  # a search with no feasible trial found nothing that dominates
                    models[s["sampler"]] = full({"architecture": s["chosen"]}, seed, teacher)
                else:
                    rows.append({"seed": seed, "model": s["sampler"], "architecture": None, "test_accuracy": None,
                                 "latency_ms_b64": None, "params": None, "dominates_reference": False})
            work = Path(tmp) / f"seed-{seed}"
            paths = []
            for i, (m, a) in enumerate(models.values()):
                d = artifacts.save_torch(work / f"m{i}", m, a, artifacts.TensorSpec(shape=(1, 8, 8)))
                paths.append(search.as_target_runs(d, ctx0, work / f"x{i}"))
            lat = dict(zip(models, search.time_side_by_side(paths, ctx0, runs=1000)))
            ref_acc = accuracy(models[ref][0], data.x_test, data.y_test)
            for name, (m, a) in models.items():
                acc = accuracy(m, data.x_test, data.y_test)
                params = sum(p.numel() for p in m.parameters())
                rows.append({"seed": seed, "model": name, "architecture": a.model_dump(mode="json"),
                             "test_accuracy": acc, "latency_ms_b64": lat[name], "params": params,
                             "dominates_reference": name != ref and acc >= ref_acc
                             and lat[name] <= lat[ref] and params <= ref_params})
                say(f"  {name}: test {acc:.4f}, {lat[name]:.3f} ms, {params} params")

    import onnxruntime

    result = {
        "command": "python benchmarks/nas_digits.py" + (f" --seeds {args.seeds}" if args.seeds != 3 else "")
        + (f" --trials {args.trials}" if args.trials != 40 else "")
        + (f" --trial-epochs {args.trial_epochs}" if args.trial_epochs != 15 else "")
        + (" --no-accuracy-floor" if args.no_accuracy_floor else ""),
        "accuracy_floor": not args.no_accuracy_floor,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
                    "cores": __import__("os").cpu_count(), "torch": torch.__version__, "optuna": optuna.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "reference": {"params": ref_params, "trial_latency_ms_b64": ref_latency, "trial_val_accuracy": ref_trial.accuracy},
        "space": SPACE,
        "searches": searches, "rows": rows}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def table(result: dict) -> str:
    """The results as Markdown (also the README's block, `benchmarks/readme_tables.py`)."""
    rows, ref = result["rows"], "x0.45 (hand-made)"
    seeds = len({r["seed"] for r in rows})
    trials = max(s["trials"] for s in result["searches"])

    def mean(model: str, key: str) -> float:
        """Over the seeds whose search found a feasible trial."""
        return statistics.mean(r[key] for r in rows if r["model"] == model and r[key] is not None)

    bounds = "validation accuracy, parameters and latency" if result["accuracy_floor"] else "parameters and latency"
    lines = [f"Teacher: digits CNN (13,802 params). Reference: x0.45 student ({result['reference']['params']:,} "
             f"params). {seeds} seeds, {trials} trials per search; static INT8 on the CPU provider, batch 64; "
             f"constraints: the reference's {bounds}. CPU flags: {', '.join(result['machine']['cpu_flags'])}; "
             f"{result['machine']['cores']} cores.", "",
             "| student | test accuracy (mean) | vs x0.45 | latency b64 (mean ms) | vs x0.45 | params (mean) | "
             "dominates x0.45 |", "|---|---|---|---|---|---|---|"]
    for model in (ref, "nsga2", "random"):
        wins = sum(r["dominates_reference"] for r in rows if r["model"] == model)
        found = sum(r["test_accuracy"] is not None for r in rows if r["model"] == model)
        if not found:
            lines.append(f"| {model} | no feasible trial in any seed | | | | | 0/{seeds} seeds |")
            continue
        lines.append(
            f"| {model} | {mean(model, 'test_accuracy') * 100:.2f}% | "
            f"{(mean(model, 'test_accuracy') - mean(ref, 'test_accuracy')) * 100:+.2f} pt | "
            f"{mean(model, 'latency_ms_b64'):.3f} | {mean(model, 'latency_ms_b64') / mean(ref, 'latency_ms_b64'):.2f}x | "
            f"{mean(model, 'params'):,.0f} | " + ("-" if model == ref else f"{wins}/{seeds} seeds"
                                                 + (f" ({seeds - found} without a feasible trial)"
                                                    if found < seeds else "")) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
