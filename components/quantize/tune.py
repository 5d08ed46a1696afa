"""Auto-tune (`quantize.tune`): quantize several ways, measure each on the target, keep the best that passes.

Candidates start from the target's defaults and whatever the recipe's quantize section pins; one
knob at a time is changed (coordinate descent, like Intel Neural Compressor's basic strategy):
transformer fusion (on graphs with attention), mode, format, per-channel scales, reduce-range,
calibration method, then keeping each quantized compute op type in float. A change is kept when the candidate ranks better:
1. it passes the recipe's gates and the default latency gate (`validators.gates.active_gates`), checked
   with the gate step's typed checker on the validation split against the source (gates on metrics
   tuning does not measure are left to the gate step);
2. then fewer failed gates;
3. then the objective: latency as a ratio to the source, timed taking turns on the target's own
   provider at the batch size; or file size.
A candidate that cannot win is not scored in full: a larger file when size is the objective, a
latency clearly worse than the best passing one when latency is. Every candidate is recorded in the
notes (and the run's report); the kept one is the step's output.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.quantize.settings import QuantizeConfig, QuantSettings, settings_for
from modelpress.core.technique import Result
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import HardwareTarget
    from modelpress.validators.gates import Gate

# The knobs, in the order they are tuned, with the values tried.
KNOBS: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("fuse", ("none", "bert")),  # first: the later knobs act on the graph it leaves
    ("mode", ("static", "dynamic")),
    ("format", ("qoperator", "qdq")),
    ("per_channel", (True, False)),
    ("reduce_range", (False, True)),
    ("calibration_method", ("minmax", "entropy", "percentile")),
)
# Only static mode reads these; a dynamic candidate differing in them alone is the same candidate.
STATIC_ONLY = ("format", "activation_type", "symmetric_activations", "calibration_method", "calibration_split",
               "calibration_samples", "percentile")
# Latency worse than the best passing candidate's by more than this: it cannot win, accuracy is not scored.
CANNOT_WIN = 1.10


@dataclass(frozen=True)
class TuneContext:
    """What tuning measures against: the pipeline's source model, its gates, and the evaluate step's threads."""

    baseline: Path | None = None  # None: the model being quantized
    gates: tuple[Gate, ...] | None = None  # the recipe's; None: the task's defaults
    batch_size: int = 64
    threads: int | None = None
    say: Callable[[str], None] = field(default=lambda msg: None)


@dataclass
class Candidate:
    config: QuantizeConfig
    settings: QuantSettings
    label: str
    result: Result | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    status: str = "measured"

    @property
    def passed(self) -> bool:
        return self.status == "measured" and not self.failed

    def rank(self, objective: str, batch: int) -> tuple[float, ...]:
        if self.status != "measured":
            return (2.0, 0.0, 0.0)
        key = "size_bytes" if objective == "size" else f"latency_ratio_b{batch}"
        return (0.0 if self.passed else 1.0, float(len(self.failed)), self.metrics.get(key, float("inf")))

    def to_dict(self, keep: tuple[str, ...]) -> dict[str, Any]:
        """The record on the variant: the `keep` metrics (objective and gated ones), to 4 significant digits."""
        return {"label": self.label, "status": self.status, "passed": self.passed, "failed": list(self.failed),
                "metrics": {k: float(f"{self.metrics[k]:.4g}") for k in keep if k in self.metrics}}


def effective(settings: QuantSettings) -> tuple:
    """What decides the quantized file: settings a mode does not read are left out."""
    body = settings.to_dict()
    if settings.mode != "static":
        body = {k: v for k, v in body.items() if k not in STATIC_ONLY}
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in body.items()))


def describe(s: QuantSettings) -> str:
    parts = [s.mode] if s.fuse == "none" else [f"{s.fuse}-fused", s.mode]
    if s.mode == "static":
        parts += [s.format or "", s.calibration_method or ""]
    parts.append("per-channel" if s.per_channel else "per-tensor")
    if s.reduce_range:
        parts.append("reduce-range")
    if s.float_op_types:
        parts.append(f"{'+'.join(s.float_op_types)} float")
    return " ".join(p for p in parts if p)


def graph_facts(model_dir: Path) -> tuple[list[str], bool]:
    """The compute op types in the model, most frequent first (what `float_op_types` candidates keep float),
    and whether it has attention (a Softmax beside MatMuls: what `fuse` candidates are tried on)."""
    from collections import Counter

    import onnx

    from modelpress.components.quantize.report import COMPUTE_OPS
    from modelpress.core import artifacts

    graph = onnx.load(str(artifacts.onnx_file(model_dir)), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    return [op for op, _ in ops.most_common() if op in COMPUTE_OPS], bool(ops["Softmax"] and ops["MatMul"])


class Bench:
    """The source scored and timed once; each candidate scored on the same split and timed taking turns with it."""

    def __init__(self, source: Path, data: DatasetSplits, target: HardwareTarget, split: str, ctx: TuneContext) -> None:
        import onnxruntime as ort

        from modelpress.components.evaluate.measure import all_outputs, feed_rows, session
        from modelpress.components.evaluate.scoring import score
        from modelpress.core import artifacts

        if target.provider not in ort.get_available_providers():
            raise ModelpressError(
                f"quantize.tune times candidates on {target.provider}, which this onnxruntime lacks",
                f"tune on a machine with {target.provider}, or drop quantize.tune for {target.name}",
            )
        self.provider, self.threads, self.batch = target.provider, ctx.threads, ctx.batch_size
        self.part = data.get(split)
        if len(self.part) == 0:
            raise ModelpressError(f"quantize.tune scores on the {split} split, which is empty",
                                  "set quantize.tune.split to a split with samples")
        self.task, self.info = data.info.get("task", "classification"), data.info
        path = artifacts.onnx_file(source)
        self.source = session(path, self.provider, self.threads)
        self.output = data.info.get("output") or self.source.get_outputs()[0].name
        self.source_out = all_outputs(self.source, self.part.inputs, self.output)
        self.source_scores = {**score(self.task, self.source_out, self.source_out, self.part, self.info),
                              "size_bytes": float(path.stat().st_size)}
        self.feed = feed_rows(self.part.inputs, self.batch)

    def session(self, model_dir: Path) -> Any:
        """One session per candidate, on the target's provider: it is timed, then scored."""
        from modelpress.components.evaluate.measure import session
        from modelpress.core import artifacts

        return session(artifacts.onnx_file(model_dir), self.provider, self.threads)

    def latency(self, cand: Any, runs: int) -> tuple[float, float]:
        """Candidate and source p50 (ms) at the batch size, timed taking turns."""
        from modelpress.components.evaluate.measure import time_interleaved

        lat = time_interleaved({"candidate": cand, "source": self.source}, self.feed, runs, min(20, runs))
        return lat["candidate"][0], lat["source"][0]

    def scores(self, cand: Any, size: float) -> tuple[dict[str, float], dict[str, float]]:
        """Candidate metrics (its scores and the comparisons, as the evaluate step names them) and the source's."""
        from modelpress.components.evaluate.measure import all_outputs
        from modelpress.components.evaluate.scoring import compare, score

        out = all_outputs(cand, self.part.inputs, self.output)
        scores = {"candidate": {**score(self.task, out, self.source_out, self.part, self.info),
                                "size_bytes": size}, "source": self.source_scores}
        return {**scores["candidate"], **compare(self.task, out, self.source_out, scores)}, dict(self.source_scores)


def stages(config: QuantizeConfig, op_types: list[str], attention: bool) -> list[tuple[str, tuple[Any, ...]]]:
    """The knobs tuning changes, in order, with their values: those the recipe left unset, then op types kept float.

    Each stage's candidates are the best so far with that one knob changed (coordinate descent)."""
    out = [(knob, values) for knob, values in KNOBS
           if getattr(config, knob) is None and (knob != "fuse" or attention)]
    if config.tune is not None and config.tune.float_op_types and not config.float_op_types:
        out.append(("float_op_types", tuple((op,) for op in op_types)))
    return out


def tune(model_dir: Path, data: DatasetSplits | None, config: QuantizeConfig, target: HardwareTarget, out_dir: Path,
         ctx: TuneContext) -> Result:
    from modelpress.components.quantize.ort_quantize import quantize_once
    from modelpress.validators.gates import active_gates, check_all, metric_value

    tune_cfg = config.tune
    assert tune_cfg is not None  # noqa: S101 - apply() calls this only with a tune section
    if data is None:
        raise ModelpressError("quantize.tune scores candidates on the dataset, and none was given",
                              "pass the source model's dataset, or drop quantize.tune")
    batch = tune_cfg.batch_size or ctx.batch_size
    # The latency guard sits at the evaluate step's batch; measured here only when tuning times that batch.
    guard_batch = ctx.batch_size
    ctx = TuneContext(ctx.baseline, ctx.gates, batch, ctx.threads, ctx.say)
    bench = Bench(ctx.baseline or model_dir, data, target, tune_cfg.split, ctx)
    recipe_gates = active_gates(ctx.gates, bench.task, target.name, objective=tune_cfg.objective, batch=guard_batch)
    op_types, attention = graph_facts(model_dir)
    op_types = op_types if tune_cfg.float_op_types else []
    lat_key = f"latency_ratio_b{batch}"
    tried: dict[tuple, Candidate] = {}
    work = Path(tempfile.mkdtemp(prefix="modelpress-tune-"))

    def attempt(cfg: QuantizeConfig, best: Candidate | None) -> Candidate | None:
        try:
            settings = settings_for(cfg, target)
        except ModelpressError:
            return None  # not a setting this target can use (an fp16 mode on an int8 target, say)
        key = effective(settings)
        if key in tried or len(tried) >= tune_cfg.max_candidates:
            return None
        cand = tried[key] = Candidate(cfg, settings, describe(settings))
        n = len(tried)
        try:
            cand.result = quantize_once(model_dir, data, settings, work / f"c{n}")
        except ModelpressError as exc:
            cand.status = f"not built: {exc.problem}"
            ctx.say(f"tune {n}: {cand.label}: {cand.status}")
            return cand
        size = cand.result.metrics["size_bytes"]
        cand.metrics["size_bytes"] = size
        beaten = best is not None and best.passed
        if tune_cfg.objective == "size" and beaten and size > best.metrics["size_bytes"]:
            cand.status = "cannot win: larger than the best passing candidate"
            ctx.say(f"tune {n}: {cand.label}: {cand.status}")
            return cand
        sess = bench.session(cand.result.model_dir)
        cand_ms, src_ms = bench.latency(sess, tune_cfg.latency_runs)
        cand.metrics |= {f"latency_p50_ms_b{batch}": cand_ms, lat_key: cand_ms / src_ms}
        if tune_cfg.objective == "latency" and beaten and cand.metrics[lat_key] > best.metrics[lat_key] * CANNOT_WIN:
            cand.status = f"cannot win: {cand.metrics[lat_key]:.2f}x latency against the best's " \
                          f"{best.metrics[lat_key]:.2f}x"
            ctx.say(f"tune {n}: {cand.label}: {cand.status}")
            return cand
        scores, source = bench.scores(sess, size)
        cand.metrics |= scores
        cand.metrics["size_ratio"] = size / source["size_bytes"]
        source |= {f"latency_p50_ms_b{batch}": src_ms}
        gates = tuple(g for g in recipe_gates if metric_value(cand.metrics, g.metric) is not None)
        verdict = check_all(gates, cand.metrics, source)
        cand.failed = tuple(r.reason for r in verdict.results if not r.passed)
        ctx.say(f"tune {n}: {cand.label}: {cand.metrics[lat_key]:.2f}x latency at b{batch}, "
                f"{cand.metrics['size_ratio']:.2f}x size; " + ("passes" if cand.passed else "; ".join(cand.failed)))
        return cand

    try:
        ctx.say(f"tune: objective {tune_cfg.objective}, timed on {bench.provider} at batch {batch}, gates checked on "
                f"the {tune_cfg.split} split; at most {tune_cfg.max_candidates} candidates")
        best = attempt(config.model_copy(update={"tune": None}), None)
        if best is None or best.status != "measured":
            raise ModelpressError(
                f"quantize.tune: the starting candidate ({best.label if best else 'target defaults'}) could not be "
                f"built: {best.status if best else 'refused'}",
                "set the quantize keys that fail explicitly, or drop quantize.tune",
            )
        rank = lambda c: c.rank(tune_cfg.objective, batch)  # noqa: E731
        for knob, values in stages(config, op_types, attention):
            for value in values:
                cand = attempt(best.config.model_copy(update={knob: value}), best)
                if cand is not None and rank(cand) < rank(best):
                    best = cand
        assert best.result is not None  # noqa: S101 - a measured candidate was built
        shutil.copytree(best.result.model_dir, out_dir, dirs_exist_ok=True)
        ordered = list(tried.values())
        keep = (lat_key, "size_ratio", *dict.fromkeys(g.metric for g in recipe_gates))
        chosen = ordered.index(best)
        why = "passes the gates on " + tune_cfg.split if best.passed else \
            "no candidate passed the gates on " + tune_cfg.split + "; kept the closest: " + "; ".join(best.failed)
        ctx.say(f"tune: kept {chosen + 1}/{len(ordered)} ({best.label}): {why}")
        notes = {**best.result.notes, "tune": {
            "objective": tune_cfg.objective, "batch_size": batch, "split": tune_cfg.split, "provider": bench.provider,
            "chosen": chosen, "chosen_label": best.label, "why": why,
            "candidates": [c.to_dict(keep) for c in ordered]}}
        metrics = {**best.result.metrics, "tune_candidates": float(len(ordered)), "tune_chosen": float(chosen + 1)}
        return Result(model_dir=out_dir, metrics=metrics, notes=notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report_section(note: dict[str, Any]) -> str | None:
    """The tuning table for the run's report (HTML), or None when the step did not tune."""
    import html

    tuned = note.get("tune")
    if not tuned:
        return None
    batch = tuned["batch_size"]
    rows = []
    for i, c in enumerate(tuned["candidates"]):
        m = c["metrics"]
        cells = [str(i + 1), html.escape(c["label"]),
                 f"{m[f'latency_ratio_b{batch}']:.2f}x" if f"latency_ratio_b{batch}" in m else "-",
                 f"{m['size_ratio']:.2f}x" if "size_ratio" in m else "-",
                 "kept" if i == tuned["chosen"] else ("passes" if c["passed"] else
                                                      html.escape(c["status"] if c["status"] != "measured"
                                                                  else "; ".join(c["failed"])))]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return (f"<h3>Quantization tuning ({html.escape(tuned['objective'])}, batch {batch}, "
            f"{html.escape(tuned['provider'])}, gates on {html.escape(tuned['split'])})</h3>"
            "<table><tr><th>#</th><th>candidate</th><th>latency vs source</th><th>size vs source</th>"
            "<th>result</th></tr>" + "".join(rows) + "</table>")
