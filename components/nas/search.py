"""One Optuna study, many workers: each pulls trials until the study has its budget of completed ones.

A trial distills the teacher into a sampled architecture for a short budget, then measures
validation accuracy, latency on the target's provider (the model as the target will run it:
quantized for an INT8 target) and parameters. Latency depends on the architecture, not the
weights, so it is cached per architecture in the study itself, where every worker sees it.

A worker killed mid-trial stops its heartbeat; after twice the interval another worker (or a
rerun) fails that trial and re-queues its parameters once (`max_retries`), recording the retry.
The study's name derives from the source version and the recipe hash, so a rerun resumes it.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.nas import space as nas_space
from modelpress.components.nas.settings import Constraint, NasConfig
from modelpress.core.dburl import redact, with_installed_driver
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import optuna

    from modelpress.components.distill.teacher import Teacher
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import HardwareTarget

DIRECTIONS = ("maximize", "minimize", "minimize")  # accuracy, latency_ms, params
LATENCY_KEY = "latency:"
RESULT_KEY = "result:"  # accuracy and parameters of an architecture already trained in this study
TEACHER_LATENCY = "teacher_latency_ms"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def study_name(source_version_uri: str, config_hash: str) -> str:
    """Derived from the run's inputs, so a rerun of the same source version and recipe resumes the study."""
    digest = hashlib.sha256(f"{source_version_uri}|{config_hash}".encode()).hexdigest()[:16]
    return f"modelpress-nas-{digest}"


def open_storage(url: str, config: NasConfig) -> Any:
    """The study storage at `url`, with heartbeats; one line naming the URL when it cannot be reached."""
    import sqlalchemy.exc
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    _quiet_experimental()

    given, url = url, with_installed_driver(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": 60}  # several workers write one file
    else:
        connect_args = {"connect_timeout": 5}
    last: Exception | None = None
    for attempt in range(5):  # workers starting together race on a fresh database's schema
        try:
            return RDBStorage(
                url, engine_kwargs={"connect_args": connect_args}, heartbeat_interval=config.heartbeat_seconds,
                grace_period=2 * config.heartbeat_seconds,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=config.max_retries),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            last = exc
            time.sleep(0.5 + random.random() * attempt)
        except ModuleNotFoundError as exc:
            raise ModelpressError(f"NAS study storage {redact(given)} needs the Python module {exc.name}, which is not "
                                  "installed", "install it (PostgreSQL: pip install psycopg2-binary)") from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError,
                sqlalchemy.exc.NoSuchModuleError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ModelpressError(f"NAS study storage {redact(given)} is unreachable ({reason})",
                                  "start that database, or point nas.storage at one that is up") from None
    raise ModelpressError(f"NAS study storage {redact(given)}: could not create its tables ({last})",
                          "run again; if it persists, create the study once by hand with optuna create-study")


def _quiet_experimental() -> None:
    """Heartbeats are what keeps a killed worker from losing the study; Optuna still calls them experimental."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", category=ExperimentalWarning)


def make_sampler(config: NasConfig, worker: int) -> Any:
    import optuna

    seed = config.seed + worker  # workers must not propose the same points
    # Samplers read the constraint values each trial sets (Trial.set_constraint).
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=config.population, seed=seed)
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(storage: Any, name: str, config: NasConfig, worker: int = 0) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS),
                               sampler=make_sampler(config, worker), load_if_exists=True)


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one worker shares."""

    teacher: Teacher
    data: DatasetSplits
    config: NasConfig
    target: HardwareTarget
    batch_size: int
    quantize: Any  # the recipe's quantize section (QuantizeConfig), applied for a quantizing target
    constraints: tuple[Constraint, ...]
    input_shape: tuple[int, ...]
    num_classes: int
    # The teacher as the target runs it, and its latency: trials are timed against it (see measure_latency).
    reference: tuple[Path, float] | None = None


def measure_latency(module: Any, spec: Any, ctx: TrialContext) -> float:
    """Milliseconds per batch of `ctx.batch_size` on the target's provider, with the model as the target runs
    it (quantized for a quantizing target).

    With `ctx.reference` (the teacher, prepared once per worker), the model is timed interleaved with the
    teacher and reported as the ratio of their fastest runs times the teacher's latency: a machine that
    slows down for a while (other workers, neighbours) slows both, so trials measured at different times
    stay comparable.
    """
    from modelpress.core import artifacts
    from modelpress.core.artifacts import TensorSpec

    with tempfile.TemporaryDirectory(prefix="modelpress-nas-") as tmp:
        torch_dir = artifacts.save_torch(Path(tmp) / "torch", module, spec, TensorSpec(shape=ctx.input_shape))
        path = as_target_runs(torch_dir, ctx, Path(tmp))
        if ctx.reference is None:
            return time_side_by_side([path], ctx)[0]
        ref_path, ref_ms = ctx.reference
        mine, ref = time_side_by_side([path, ref_path], ctx)
        return ref_ms * mine / ref


def as_target_runs(model_dir: Path, ctx: TrialContext, work: Path) -> Path:
    """The ONNX file of the model in `model_dir` as `ctx.target` runs it: exported, quantized if it quantizes."""
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.core import artifacts
    from modelpress.core.technique import get_technique

    onnx_dir = export_onnx(model_dir, work / "onnx")
    if ctx.target.quantization is not None:
        onnx_dir = get_technique("quantize").apply(onnx_dir, ctx.data, ctx.quantize, ctx.target, work / "quant").model_dir
    return artifacts.onnx_file(onnx_dir)


def time_side_by_side(paths: list[Path], ctx: TrialContext, runs: int | None = None) -> list[float]:
    """The fastest of `runs` timed runs per model, the models taking turns, on the target's provider."""
    import numpy as np
    import onnxruntime as ort

    provider = ctx.target.provider
    if provider not in ort.get_available_providers():
        raise ModelpressError(f"nas: {ctx.target.name}'s provider {provider} is not installed here, so trial "
                              "latency cannot be measured on it",
                              "run the search where that provider is, or set nas.target to a target this "
                              "machine has")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1  # workers share the machine; one thread each keeps them apart
    sessions = [ort.InferenceSession(str(p), sess_options=opts, providers=[provider]) for p in paths]
    x = ctx.data.x_val
    batch = np.ascontiguousarray(x[np.arange(ctx.batch_size) % len(x)])
    feeds = [{s.get_inputs()[0].name: batch} for s in sessions]
    for _ in range(20):
        for s, f in zip(sessions, feeds):
            s.run(None, f)
    best = [float("inf")] * len(sessions)
    for _ in range(runs or ctx.config.latency_runs):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            t0 = time.perf_counter()
            s.run(None, f)
            best[i] = min(best[i], (time.perf_counter() - t0) * 1e3)
    return best


def cached_latency(study: optuna.Study, key: str, measure: Callable[[], float]) -> float:
    """Measured once per architecture for the whole study."""
    attrs = study.user_attrs
    if LATENCY_KEY + key in attrs:
        return float(attrs[LATENCY_KEY + key])
    value = measure()
    study.set_user_attr(LATENCY_KEY + key, value)
    return value


def evaluate_trial(study: optuna.Study, trial: optuna.Trial, ctx: TrialContext,
                   say: Callable[[str], None] = _say) -> tuple[float, float, float]:
    """Build, briefly distill and measure the trial's architecture; sets its constraint values."""
    from modelpress.components.distill.distill import distill
    from modelpress.components.distill.settings import DistillConfig

    params = nas_space.suggest(trial, ctx.config.space)
    spec = nas_space.spec_from(params, ctx.config.space, ctx.num_classes, ctx.input_shape)
    trial.set_user_attr("architecture", spec.model_dump(mode="json"))
    key = nas_space.arch_key(spec)
    seen = study.user_attrs.get(RESULT_KEY + key)
    if seen is not None:  # an architecture the sampler proposed again: same seed, same training, same result
        accuracy, params, val_loss = seen
        latency = cached_latency(study, key, lambda: math.nan)
        trial.set_user_attr("repeat", True)
    else:
        cfg = DistillConfig(student={"architecture": spec}, temperature=ctx.config.temperature,
                            alpha=ctx.config.alpha, train=ctx.config.train.model_dump())
        student, _, metrics, notes = distill(ctx.teacher, ctx.data, cfg, ctx.input_shape, say=lambda _m: None)
        accuracy, params = metrics["val_accuracy"], metrics["student_params"]
        # 180 validation images tie often: the kept epoch's validation loss tells tied trials apart.
        val_loss = float(notes["history"][int(metrics["best_epoch"]) - 1]["val_loss"])
        latency = cached_latency(study, key, lambda: measure_latency(student, spec, ctx))
        study.set_user_attr(RESULT_KEY + key, [accuracy, params, val_loss])
    trial.set_user_attr("val_loss", val_loss)
    values = {"accuracy": accuracy, "latency_ms": latency, "params": params, "size_bytes": 4.0 * params}
    violations = [c.violation(values[c.metric]) for c in ctx.constraints]
    for i, (c, v) in enumerate(zip(ctx.constraints, violations)):
        trial.set_constraint(f"{i}:{c.metric}", v)
    trial.set_user_attr("feasible", all(v <= 0 for v in violations))
    trial.set_user_attr("size_bytes", values["size_bytes"])
    say(f"nas: trial {trial.number}: {_describe(spec)} -> val acc {values['accuracy']:.4f}, "
        f"{latency:.3f} ms, {int(values['params'])} params{'' if all(v <= 0 for v in violations) else ' (infeasible)'}")
    return values["accuracy"], latency, values["params"]


def _describe(spec: Any) -> str:
    d = spec.model_dump()
    if d["family"] == "digits-cnn":
        return (f"cnn {'-'.join(map(str, d['channels']))} k{'-'.join(map(str, spec.kernels or ()))} "
                f"h{d['hidden']} {d['activation']}{' +skip' if d['residual'] else ''}{' pool' if d['head'] == 'pool' else ''}")
    return f"mlp {'-'.join(map(str, d['hidden']))} {d['activation']}"


def counts(study: optuna.Study) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def run_worker(study: optuna.Study, ctx: TrialContext, worker: int = 0, say: Callable[[str], None] = _say,
               max_failures: int | None = None) -> dict[str, int]:
    """Pull trials until the study holds `ctx.config.trials` completed ones; returns the state counts."""
    import optuna
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import get_heartbeat_thread

    _quiet_experimental()

    budget = ctx.config.trials
    limit = max_failures if max_failures is not None else max(3, budget)
    own_failures = 0
    while True:
        fail_stale_trials(study)  # a dead worker's trial: failed, then re-queued once
        n = counts(study)
        done, running, waiting = n.get("COMPLETE", 0), n.get("RUNNING", 0), n.get("WAITING", 0)
        if done >= budget:
            break
        if done + running >= budget and waiting == 0:
            # The last trials are running elsewhere; a dead worker's one fails after the grace period.
            time.sleep(min(ctx.config.heartbeat_seconds, 5))
            continue
        trial = study.ask()
        if (retry := study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")) is not None:
            trial.set_user_attr("retry_of", retry)
            say(f"nas: worker {worker}: trial {trial.number} retries trial {retry}, whose worker stopped")
        try:
            with get_heartbeat_thread(trial._trial_id, study._storage):
                values = evaluate_trial(study, trial, ctx, say)
        except (ModelpressError, RuntimeError, ValueError) as exc:
            own_failures += 1
            trial.set_user_attr("error", str(exc).splitlines()[0][:500])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            say(f"nas: trial {trial.number} failed: {str(exc).splitlines()[0]}")
            if own_failures >= limit:
                raise ModelpressError(f"nas: {own_failures} trials failed in this worker, the last with: "
                                      f"{str(exc).splitlines()[0]}",
                                      "fix the search space or the data; see the trial errors above") from None
            continue
        study.tell(trial, list(values))
    n = counts(study)
    say(f"nas: worker {worker} done: study has {n.get('COMPLETE', 0)} complete, {n.get('FAIL', 0)} failed trials")
    return n


@contextmanager
def with_reference(study: optuna.Study, ctx: TrialContext) -> Iterator[TrialContext]:
    """`ctx` with the teacher prepared as the target runs it, and its latency (measured once per study)."""
    with tempfile.TemporaryDirectory(prefix="modelpress-nas-teacher-") as tmp:
        path = as_target_runs(ctx.teacher.model_dir, ctx, Path(tmp))
        ms = cached_latency(study, TEACHER_LATENCY, lambda: time_side_by_side([path], ctx)[0])
        yield replace(ctx, reference=(path, ms))


def gate_constraints(gates: Any, teacher_val_accuracy: float, slack: float) -> tuple[Constraint, ...]:
    """The recipe's accuracy gates as search constraints on a trial's validation accuracy, `slack` lower for
    its short training.

    Size and latency gates judge the final, quantized variant; a short trial cannot stand for it.
    """
    out = []
    for gate in gates:
        if gate.metric != "accuracy":
            continue
        lows = []
        if gate.value is not None and gate.value.lower is not None:
            lows.append(gate.value.lower)
        if gate.change is not None and gate.change.max_degradation is not None:
            lows.append(teacher_val_accuracy - gate.change.max_degradation)
        if gate.change is not None and gate.change.max_relative_degradation is not None:
            lows.append(teacher_val_accuracy * (1 - gate.change.max_relative_degradation))
        if lows:
            out.append(Constraint(metric="accuracy", lower=max(lows) - slack))
    return tuple(out)


def check_fits(config: NasConfig, input_shape: tuple[int, ...]) -> None:
    """Refuse, before any trial, a family that cannot take the teacher's input."""
    if config.space.family == "digits-cnn" and tuple(input_shape) != (1, 8, 8):
        raise ModelpressError(f"nas.space.family digits-cnn takes 1x8x8 images, and the teacher's input is "
                              f"{'x'.join(map(str, input_shape))}",
                              "use family mlp (any input, flattened) for this model")


def num_classes_of(teacher: Teacher, input_shape: tuple[int, ...]) -> int:
    import torch

    return int(teacher(torch.zeros((2, *input_shape))).shape[-1])

