"""The run's Pareto report: quality against latency and size, per target, as one self-contained HTML file.

Plain library code (no kfp). matplotlib is imported inside the functions: seconds of import that only
the report pays for.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpress.core.tasks import default_gates, lower_is_better

_LATENCY = "latency_p50_ms_b"


@dataclass(frozen=True)
class Point:
    label: str
    target: str
    kind: str  # "source" or "variant"
    passed: bool | None  # None for the source: it is not gated
    quality: float
    quality_name: str
    higher_is_better: bool
    latency_ms: float | None  # None where the target's provider is not installed here
    batch: int | None
    size_bytes: float


def headline_metric(task: str) -> str:
    """The metric a task's default gate holds (accuracy, rmse, cosine_mean): the one the report plots."""
    return default_gates(task)[0].metric


def points_from_verdicts(rows: list[dict[str, Any]], source_name: str | None = None) -> list[Point]:
    """A source point per target (each target measures the source on its own provider) and each variant."""
    points: list[Point] = []
    for row in rows:
        ev, target = row["evaluation"], row["target"]
        task = ev.get("task", "classification")  # evaluations from before tasks existed are classifiers
        metric = headline_metric(task)
        cand, source = ev["candidate"], ev["source"]
        batches = [int(k.removeprefix(_LATENCY)) for k in cand if k.startswith(_LATENCY)]
        batch = max(batches) if batches else None
        # A deep-compressed variant ships as its .mpdc file, not the decoded ONNX that was measured.
        packed = ev.get("technique", {}).get("deep_compress_compressed_bytes")
        for kind, m in (("source", source), ("variant", cand)):
            if kind == "source" and any(p.kind == "source" and p.target == target for p in points):
                continue
            latency = m.get(f"{_LATENCY}{batch}") if batch is not None else None
            label = (source_name or "source") if kind == "source" else (
                f"{source_name}.{target}" if source_name else target)
            size = packed if kind == "variant" and packed is not None else m["size_bytes"]
            points.append(Point(label=label, target=target, kind=kind,
                                passed=bool(row["passed"]) if kind == "variant" else None,
                                quality=float(m[metric]), quality_name=metric,
                                higher_is_better=not lower_is_better(metric),
                                latency_ms=None if latency is None else float(latency),
                                batch=batch if latency is not None else None, size_bytes=float(size)))
    return points


def _costs(p: Point, latency: bool) -> tuple[float, ...]:
    """Lower is better on every axis."""
    q = -p.quality if p.higher_is_better else p.quality
    return (q, p.latency_ms, p.size_bytes) if latency else (q, p.size_bytes)


def _front(points: list[Point], costs: list[tuple[float, ...]]) -> list[Point]:
    """The points whose costs no other point's costs beat: at most as high on all, lower on one."""
    return [p for p, c in zip(points, costs)
            if not any(all(o <= s for o, s in zip(other, c)) and other != c for other in costs)]


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """The non-dominated points of each target, in input order; equal points are all kept."""
    points = list(points)
    front: set[int] = set()
    for target in dict.fromkeys(p.target for p in points):
        group = [p for p in points if p.target == target]
        # Latency counts only where every point of the target has it (it is measured per target or not at all).
        latency = all(p.latency_ms is not None for p in group)
        front |= {id(p) for p in _front(group, [_costs(p, latency) for p in group])}
    return [p for p in points if id(p) in front]


def _size_unit(points: list[Point]) -> tuple[float, str]:
    return (2**20, "MiB") if max(p.size_bytes for p in points) >= 2**20 else (1024, "KiB")


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _figure_png(group: list[Point], front: list[Point]) -> tuple[bytes, int, int]:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg
    from matplotlib.lines import Line2D

    div, unit = _size_unit(group)
    axes = [("latency_ms", f"latency p50, batch {group[0].batch} (ms)", 1.0)] if all(
        p.latency_ms is not None for p in group) else []
    axes.append(("size_bytes", f"size ({unit})", div))
    fig = Figure(figsize=(5.5 * len(axes), 4.2), dpi=100, layout="constrained")
    on_front = {id(p) for p in front}
    for ax, (attr, xlabel, scale) in zip(fig.subplots(1, len(axes), squeeze=False)[0], axes):
        x = {id(p): getattr(p, attr) / scale for p in group}
        # This panel's own trade-off curve: the 2-D front of quality against this axis, as a step.
        costs = [(_costs(p, False)[0], x[id(p)]) for p in group]
        curve = sorted(_front(group, costs), key=lambda p: x[id(p)])
        ax.step([x[id(p)] for p in curve], [p.quality for p in curve], where="post", color="0.45",
                linestyle="--", linewidth=1.2, label="trade-off curve")
        mid = sorted(x.values())[(len(group) - 1) // 2]
        for p in group:
            style = (dict(marker="*", s=220, color="#1f77b4") if p.kind == "source" else
                     dict(marker="o", s=90, color="#2ca02c") if p.passed else
                     dict(marker="X", s=110, color="#d62728"))
            ax.scatter([x[id(p)]], [p.quality], zorder=3, **style)
            if id(p) in on_front:  # a ring marks the front over all three axes
                ax.scatter([x[id(p)]], [p.quality], s=380, facecolors="none", edgecolors="black", zorder=2)
            # Labels of the right half go left of their marker, so they stay inside the axes.
            left = x[id(p)] > mid
            ax.annotate(p.label, (x[id(p)], p.quality), textcoords="offset points", xytext=(-9 if left else 9, 5),
                        ha="right" if left else "left", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.margins(x=0.2, y=0.15)  # room for the labels next to the markers
        if max(x.values()) > 20 * min(x.values()) > 0:
            ax.set_xscale("log")  # deep compression and distillation span orders of magnitude
        better = "higher" if group[0].higher_is_better else "lower"
        ax.set_ylabel(f"{group[0].quality_name} ({better} is better)")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker=m, markersize=ms, color=c, linestyle="none", label=n)
               for m, ms, c, n in (("*", 15, "#1f77b4", "source"), ("o", 9, "#2ca02c", "variant, passed"),
                                   ("X", 10, "#d62728", "variant, failed"))]
    handles.append(Line2D([], [], marker="o", markersize=19, markerfacecolor="none", markeredgecolor="black",
                          linestyle="none", label="Pareto front"))
    fig.axes[0].legend(handles=[*handles, fig.axes[0].lines[0]], fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no URL in the PNG either
    width, height = fig.canvas.get_width_height()
    return buf.getvalue(), width, height


def _fmt(p: Point) -> list[str]:
    latency = "-" if p.latency_ms is None else f"{p.latency_ms:.4g} ms (b{p.batch})"
    passed = "-" if p.passed is None else ("passed" if p.passed else "FAILED")
    return [p.label, p.target, p.kind, f"{p.quality_name} {p.quality:.4g}", latency,
            _size(p.size_bytes), passed]


def render_report(points: list[Point], out_html: Path, title: str, sections: list[str] | None = None) -> Path:
    """One HTML file with everything inline: a figure per target, a table of every point, then `sections`
    (HTML fragments the techniques add, such as the architecture search's front)."""
    e = html.escape
    front = {id(p) for p in pareto_front(points)}
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1150px}img{max-width:100%;height:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             ".failed{color:#b00}</style></head><body>", f"<h1>{e(title)}</h1>",
             "<p>Each target measures the source and its variant on its own provider. A ringed point is on the "
             "Pareto front: no other point of its target is as good on quality, latency and size and better on "
             "one of them (on quality and size where the target's latency was not measured).</p>"]
    for target in dict.fromkeys(p.target for p in points):
        group = [p for p in points if p.target == target]
        png, width, height = _figure_png(group, [p for p in group if id(p) in front])
        axes = "latency and size" if group[0].latency_ms is not None else "size"
        alt = (f"{group[0].quality_name} against {axes} for target {target}: {len(group)} points, "
               f"{sum(id(p) in front for p in group)} on the Pareto front")
        parts += [f"<h2>{e(target)}</h2>", f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
                  f'width="{width}" height="{height}" alt="{e(alt)}">']
    header = ["label", "target", "kind", "quality", "latency p50", "size", "gate", "Pareto front"]
    parts += ["<h2>All points</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for p in points:
        cells = [*_fmt(p), "yes" if id(p) in front else "no"]
        row_class = ' class="failed"' if p.passed is False else ""
        parts.append(f"<tr{row_class}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    parts += sections or []
    parts.append("</body></html>\n")
    out_html = Path(out_html)
    out_html.write_text("\n".join(parts), encoding="utf-8")
    return out_html
