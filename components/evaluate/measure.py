"""Measure a candidate against its source, side by side, in one process.

Accuracy, agreement, size and latency are measured for both models in the
same run on the same execution provider, so ratios compare like with like.
Where the target's provider is not installed, latency is *absent* and the
reason is recorded: a latency gate then fails as "metric missing" rather
than passing on a number from the wrong hardware.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from modelpress.core import artifacts
from modelpress.core.config import FrozenConfig
from modelpress.core.hardware import HardwareTarget

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

    from modelpress.core.data import DatasetSplits


class EvaluateConfig(FrozenConfig):
    split: str = Field(default="test", pattern="^(train|val|test)$", description="Split to score.")
    batch_sizes: tuple[Annotated[int, Field(ge=1, le=65536)], ...] = Field(
        default=(1, 64), min_length=1, max_length=8, description="Batch sizes to time (each 1-65536)."
    )
    latency_runs: int = Field(
        default=200, ge=5, le=100_000, description="Timed runs per model and batch size."
    )
    warmup_runs: int = Field(default=20, ge=0, le=10_000, description="Untimed runs first.")
    threads: int | None = Field(
        default=None, ge=1, le=256, description="ORT intra-op threads; None lets ORT choose."
    )


@dataclass(frozen=True)
class Evaluation:
    candidate: dict[str, float]
    source: dict[str, float]
    comparison: dict[str, float]
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "source": self.source,
            "comparison": self.comparison,
            "environment": self.environment,
        }


def session(path: Path, provider: str, threads: int | None) -> ort.InferenceSession:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=[provider])


def all_outputs(sess: ort.InferenceSession, inputs: dict[str, np.ndarray], output: str, batch: int = 64) -> np.ndarray:
    """The scored output over every sample, each input fed by name with its own dtype."""
    import numpy as np

    n = len(next(iter(inputs.values())))
    return np.concatenate([sess.run([output], {k: v[i : i + batch] for k, v in inputs.items()})[0]
                           for i in range(0, n, batch)])


def feed_rows(inputs: dict[str, np.ndarray], b: int) -> dict[str, np.ndarray]:
    """A batch of `b` real samples (repeated when the split is smaller), every input at its real shape."""
    import numpy as np

    index = np.arange(b) % len(next(iter(inputs.values())))
    return {k: np.ascontiguousarray(v[index]) for k, v in inputs.items()}


# Consecutive runs per model in each turn; the first, just after switching models, is not timed.
BLOCK = 10


def time_interleaved(
    sessions: dict[str, ort.InferenceSession], feed: dict[str, np.ndarray], runs: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """p50 and p95 in ms over `runs` timed runs per model on one feed.

    Models take turns in blocks of `BLOCK` runs, so machine drift hits all of them alike, and within a
    block a model runs warm, as a served model does: its weights in cache, its threads awake. The run
    after a switch is not timed. Switching models every run timed every run cold instead, and not
    alike: on all-MiniLM-L6-v2 it slowed dynamic INT8 more than FP32 (`benchmarks/timing_method.py`).
    """
    import numpy as np

    for _ in range(warmup):
        for s in sessions.values():
            s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    while any(len(v) < runs for v in times.values()):
        for k, s in sessions.items():
            s.run(None, feed)  # the switch-over run
            for _ in range(min(BLOCK - 1, runs - len(times[k]))):
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for k, v in times.items()}


def evaluate(
    candidate_dir: Path,
    source_dir: Path,
    data: DatasetSplits,
    target: HardwareTarget,
    config: EvaluateConfig,
    progress: Any = None,
) -> Evaluation:
    import onnxruntime as ort

    from modelpress.components.evaluate.scoring import compare, score

    say = progress or (lambda msg: None)
    paths = {"candidate": artifacts.onnx_file(candidate_dir), "source": artifacts.onnx_file(source_dir)}
    for name, path in paths.items():
        artifacts.check_onnx(path, f"{name} model")
    available = ort.get_available_providers()
    usable = [p for p in target.execution_providers if p in available]
    acc_provider = usable[0]  # CPUExecutionProvider is always last in the catalog
    part = data.get(config.split)
    # Datasets bound before tasks existed (single-output classifiers) score as classification.
    task = data.info.get("task", "classification")
    output = data.info.get("output") or session(paths["source"], acc_provider, None).get_outputs()[0].name

    outputs = {name: all_outputs(session(path, acc_provider, config.threads), part.inputs, output)
               for name, path in paths.items()}
    # Each model against the labels; for embeddings, against the source's outputs (the source: itself).
    out = {name: {**score(task, outputs[name], outputs["source"], part, data.info),
                  "size_bytes": float(path.stat().st_size)} for name, path in paths.items()}
    comparison = compare(task, outputs["candidate"], outputs["source"], out)
    say(f"{task}: " + ", ".join(f"{k} {v:.4f} (source {out['source'][k]:.4f})" for k, v in out["candidate"].items()
                                if k != "size_bytes"))

    env: dict[str, Any] = {
        "target": target.name,
        "target_provider": target.provider,
        "accuracy_provider": acc_provider,
        "onnxruntime": ort.__version__,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
    }
    if target.provider in available:
        env["latency_provider"] = target.provider
        sessions = {n: session(p, target.provider, config.threads) for n, p in paths.items()}
        for b in config.batch_sizes:
            lat = time_interleaved(sessions, feed_rows(part.inputs, b), config.latency_runs, config.warmup_runs)
            for name, (p50, p95) in lat.items():
                out[name][f"latency_p50_ms_b{b}"] = p50
                out[name][f"latency_p95_ms_b{b}"] = p95
            say(f"latency b{b}: candidate p50 {lat['candidate'][0]:.3f} ms, source {lat['source'][0]:.3f} ms")
    else:
        env["latency_unavailable"] = f"{target.provider} is not installed in this onnxruntime"

    comparison["size_ratio"] = out["candidate"]["size_bytes"] / out["source"]["size_bytes"]
    for b in config.batch_sizes:
        key = f"latency_p50_ms_b{b}"
        if key in out["candidate"]:
            comparison[f"latency_ratio_b{b}"] = out["candidate"][key] / out["source"][key]
    return Evaluation(out["candidate"], out["source"], comparison, env)


def machine() -> dict[str, Any]:
    """What a benchmark ran on, recorded with its results: CPU model, SIMD flags, cores, library versions."""
    from importlib import metadata

    versions = {}
    for package in ("onnxruntime", "torch", "numpy", "mlflow", "kfp"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "onnxruntime": versions.get("onnxruntime"), "versions": versions}


def cpu_model() -> str:
    """The CPU's model name (x86 Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD flags that decide INT8 speed; recorded next to every latency."""
    wanted = {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd"}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []
