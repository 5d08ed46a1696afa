"""After the search: the feasible Pareto front, the trial the recipe's rule picks, a plot, and MLflow runs.

Objectives: validation accuracy (higher), latency (lower), parameters (lower). A trial is on
the front when no other feasible trial is at least as good on all three and better on one.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelpress.errors import ModelpressError

# Ties on accuracy (frequent on a small validation split) go to the lower validation loss.
RULES = {
    "fastest": lambda p: (p.latency_ms, -p.accuracy, p.val_loss, p.params),
    "smallest": lambda p: (p.params, -p.accuracy, p.val_loss, p.latency_ms),
    "most_accurate": lambda p: (-p.accuracy, p.val_loss, p.latency_ms, p.params),
}


@dataclass(frozen=True)
class TrialPoint:
    number: int
    accuracy: float
    latency_ms: float
    params: float
    feasible: bool
    architecture: dict[str, Any]
    retry_of: int | None = None
    val_loss: float = float("inf")

    def dominates(self, other: TrialPoint) -> bool:
        mine, theirs = (-self.accuracy, self.latency_ms, self.params), (-other.accuracy, other.latency_ms, other.params)
        return all(a <= b for a, b in zip(mine, theirs)) and mine != theirs


def points(study: Any) -> list[TrialPoint]:
    """Every completed trial of the study."""
    import optuna

    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        out.append(TrialPoint(number=t.number, accuracy=t.values[0], latency_ms=t.values[1], params=t.values[2],
                              feasible=bool(t.user_attrs.get("feasible", False)),
                              architecture=t.user_attrs["architecture"], retry_of=t.user_attrs.get("retry_of"),
                              val_loss=float(t.user_attrs.get("val_loss", float("inf")))))
    return out


def pareto_front(pts: list[TrialPoint]) -> list[TrialPoint]:
    feasible = [p for p in pts if p.feasible]
    return sorted((p for p in feasible if not any(q.dominates(p) for q in feasible)), key=lambda p: p.latency_ms)


def choose(pts: list[TrialPoint], rule: str) -> TrialPoint:
    front = pareto_front(pts)
    if not front:
        raise ModelpressError(
            f"nas: none of the {len(pts)} completed trials meets the constraints (nas.constraints and the recipe's "
            "accuracy gates)", "loosen the constraints, widen the search space, or give the study more trials")
    return min(front, key=RULES[rule])


def summary(study: Any, study_name: str, config: Any, pts: list[TrialPoint], chosen: TrialPoint, storage: str) -> Any:
    """The metrics and notes (a technique Result, model folder unset) of a finished search; `storage` as shown."""
    from modelpress.components.nas import search
    from modelpress.core.technique import Result

    n = search.counts(study)
    on_front = pareto_front(pts)
    teacher_ms = study.user_attrs.get(search.LATENCY_KEY + search.TEACHER_LATENCY)
    metrics = {"trials_complete": float(n.get("COMPLETE", 0)), "trials_failed": float(n.get("FAIL", 0)),
               "trials_feasible": float(sum(p.feasible for p in pts)), "front_size": float(len(on_front)),
               "chosen_trial": float(chosen.number), "chosen_accuracy": chosen.accuracy,
               "chosen_latency_ms": chosen.latency_ms, "chosen_params": chosen.params,
               **({"teacher_latency_ms": float(teacher_ms)} if teacher_ms is not None else {})}
    notes = {"study": study_name, "storage": storage, "sampler": config.sampler, "rule": config.select,
             "trial": chosen.number, "architecture": chosen.architecture,
             "retried": sorted({p.retry_of for p in pts if p.retry_of is not None}),
             "front": [{"trial": p.number, "accuracy": round(p.accuracy, 5), "latency_ms": round(p.latency_ms, 5),
                        "params": p.params} for p in [*on_front[:20], *([] if chosen in on_front[:20] else [chosen])]]}
    return Result(model_dir=Path("."), metrics=metrics, notes=notes)


def plot_png(pts: list[TrialPoint], chosen: TrialPoint) -> bytes:
    """Latency against accuracy, marker area by parameters; the front joined, the chosen trial ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    biggest = max(p.params for p in pts)
    for feasible, colour, label in ((False, "#bbbbbb", "infeasible"), (True, "#4c72b0", "feasible")):
        group = [p for p in pts if p.feasible == feasible]
        if group:
            ax.scatter([p.latency_ms for p in group], [p.accuracy for p in group], s=[20 + 200 * p.params / biggest
                       for p in group], c=colour, alpha=0.6, label=label, edgecolors="none")
    if front:
        ax.plot([p.latency_ms for p in front], [p.accuracy for p in front], "-o", c="#dd8452", ms=4,
                label="Pareto front (feasible)")
    ax.scatter([chosen.latency_ms], [chosen.accuracy], s=260, facecolors="none", edgecolors="#c44e52", linewidths=2,
               label=f"chosen: trial {chosen.number}")
    ax.set_xlabel("latency (ms per batch, target provider)")
    ax.set_ylabel("validation accuracy (short training)")
    ax.set_title(f"NAS: {len(pts)} trials, marker area = parameters")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def section_html(pts: list[TrialPoint], chosen: TrialPoint, title: str) -> str:
    """An HTML fragment: the plot (inline PNG) and the feasible front's table, the chosen trial marked."""
    e = html.escape
    png = base64.b64encode(plot_png(pts, chosen)).decode()
    rows = "".join(
        f"<tr{' style=background:#fde2e2' if p.number == chosen.number else ''}><td>{p.number}</td>"
        f"<td>{p.accuracy:.4f}</td><td>{p.latency_ms:.3f}</td><td>{int(p.params)}</td>"
        f"<td><code>{e(json.dumps(p.architecture))}</code></td></tr>" for p in pareto_front(pts))
    return (f"<h2>{e(title)}</h2><img alt='architecture search: {len(pts)} trials, the feasible Pareto front and "
            f"trial {chosen.number}, chosen' src='data:image/png;base64,{png}'>"
            "<table><tr><th>trial</th><th>val accuracy</th><th>latency ms</th><th>params</th><th>architecture</th></tr>"
            f"{rows}</table>")


def report_html(pts: list[TrialPoint], chosen: TrialPoint, title: str) -> str:
    """A self-contained page of `section_html`."""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head><body>"
            f"{section_html(pts, chosen, title)}</body></html>")


def from_note(note: dict[str, Any]) -> tuple[list[TrialPoint], TrialPoint]:
    """The front points a variant's nas note keeps, and the chosen one among them."""
    pts = [TrialPoint(number=p["trial"], accuracy=p["accuracy"], latency_ms=p["latency_ms"], params=p["params"],
                      feasible=True, architecture=p.get("architecture", {})) for p in note["front"]]
    return pts, next(p for p in pts if p.number == note["trial"])


def log_trials(client: Any, experiment_id: str, pts: list[TrialPoint], failed: list[dict[str, Any]],
               chosen: TrialPoint, summary: dict[str, Any], html: str, out_dir: Path) -> str:
    """One parent MLflow run for the search, one child run per trial; returns the parent's id."""
    from mlflow.entities import Metric, Param, RunTag

    from modelpress.registry import tags as T

    front = {p.number for p in pareto_front(pts)}
    parent = client.create_run(experiment_id, run_name=f"nas {summary['study']}", tags={
        T.KIND: "nas-search", "modelpress.nas.study": summary["study"], "modelpress.nas.sampler": summary["sampler"],
        "modelpress.nas.rule": summary["rule"], "modelpress.nas.chosen_trial": str(chosen.number),
        **T.origin_tags()})
    pid = parent.info.run_id
    for p in pts:
        child = client.create_run(experiment_id, run_name=f"trial {p.number}", tags={
            "mlflow.parentRunId": pid, T.KIND: "nas-trial", "modelpress.nas.state": "COMPLETE", **T.origin_tags(),
            "modelpress.nas.feasible": str(p.feasible).lower(), "modelpress.nas.on_front": str(p.number in front).lower(),
            "modelpress.nas.chosen": str(p.number == chosen.number).lower(),
            **({"modelpress.nas.retry_of": str(p.retry_of)} if p.retry_of is not None else {})})
        client.log_batch(child.info.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in (
            ("val_accuracy", p.accuracy), ("latency_ms", p.latency_ms), ("params", p.params))],
            params=[Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in p.architecture.items()],
            tags=[RunTag("modelpress.nas.trial", str(p.number))])
        client.set_terminated(child.info.run_id)
    for f in failed:
        child = client.create_run(experiment_id, run_name=f"trial {f['number']}", tags={
            "mlflow.parentRunId": pid, T.KIND: "nas-trial", "modelpress.nas.state": f["state"], **T.origin_tags(),
            "modelpress.nas.trial": str(f["number"]), "modelpress.nas.error": f.get("error", "")[:500]})
        client.set_terminated(child.info.run_id, status="FAILED")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "nas_front.html").write_text(html)
    (out_dir / "nas_front.json").write_text(json.dumps({**summary, "trials": [asdict(p) for p in pts]}, indent=2))
    client.log_artifact(pid, str(out_dir / "nas_front.html"))
    client.log_artifact(pid, str(out_dir / "nas_front.json"))
    client.log_batch(pid, metrics=[Metric(k, float(v), 0, 0) for k, v in summary["metrics"].items()])
    client.set_terminated(pid)
    return pid
