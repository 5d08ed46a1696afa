"""The summarize step's Pareto report: points from verdict rows, the front, and a self-contained HTML file."""

from __future__ import annotations

import base64
import re

import pytest

from modelpress.components.summarize.pareto import Point, pareto_front, points_from_verdicts, render_report


def verdict(target: str, candidate: dict, source: dict, *, task: str = "classification", passed: bool = True,
            technique: dict | None = None) -> dict:
    """A verdict row as the gate step writes it (only the keys the report reads, plus a few it must ignore)."""
    return {"passed": passed, "reason": "all gates passed" if passed else "accuracy: failed", "results": [],
            "target": target, "verdict_path": f"/runs/{target}/verdict",
            "evaluation": {"task": task, "candidate": candidate, "source": source,
                           "comparison": {"size_ratio": candidate["size_bytes"] / source["size_bytes"]},
                           "technique": technique or {}, "environment": {"latency_provider": "CPUExecutionProvider"}}}


def measured(quality: dict, size: float, b1: float | None = None, b64: float | None = None) -> dict:
    lat = {} if b1 is None else {"latency_p50_ms_b1": b1, "latency_p95_ms_b1": 2 * b1}
    if b64 is not None:
        lat |= {"latency_p50_ms_b64": b64, "latency_p95_ms_b64": 2 * b64}
    return {**quality, "size_bytes": size, **lat}


def point(label: str, quality: float, latency: float | None, size: float, *, target: str = "t",
          higher: bool = True) -> Point:
    return Point(label=label, target=target, kind="variant", passed=True, quality=quality,
                 quality_name="accuracy" if higher else "rmse", higher_is_better=higher,
                 latency_ms=latency, batch=None if latency is None else 1, size_bytes=size)


SOURCE = measured({"accuracy": 0.98}, 56_000, b1=0.10, b64=2.0)


def test_points_from_a_classification_verdict():
    rows = [verdict("cpu-x86-int8", measured({"accuracy": 0.97}, 18_000, b1=0.05, b64=1.5), SOURCE)]
    src, var = points_from_verdicts(rows, "digits-cnn")
    assert (src.label, src.kind, src.passed) == ("digits-cnn", "source", None)
    assert (var.label, var.kind, var.passed) == ("digits-cnn.cpu-x86-int8", "variant", True)
    # The largest batch measured is the one plotted.
    assert (var.batch, var.latency_ms, src.latency_ms) == (64, 1.5, 2.0)
    assert (var.quality, var.quality_name, var.higher_is_better, var.size_bytes) == (0.97, "accuracy", True, 18_000)
    assert points_from_verdicts(rows)[1].label == "cpu-x86-int8"


def test_the_source_appears_once_per_target():
    rows = [verdict(t, measured({"accuracy": 0.97}, 18_000, b1=0.05), SOURCE) for t in ("a", "b", "a")]
    sources = [p.target for p in points_from_verdicts(rows) if p.kind == "source"]
    assert sources == ["a", "b"]


def test_a_deep_compressed_variant_is_sized_by_the_file_that_ships():
    rows = [verdict("t", measured({"accuracy": 0.97}, 56_000, b1=0.1), SOURCE,
                    technique={"deep_compress_compressed_bytes": 4_000})]
    assert points_from_verdicts(rows)[1].size_bytes == 4_000


def test_dominated_points_are_off_the_front():
    best = point("best", 0.98, 1.0, 100)
    worse = point("worse", 0.97, 2.0, 200)  # worse on everything
    fast = point("fast", 0.90, 0.5, 200)  # a trade-off: faster, less accurate
    assert pareto_front([best, worse, fast]) == [best, fast]


def test_ties_stay_on_the_front_and_one_strict_gain_dominates():
    a, a_again = point("a", 0.98, 1.0, 100), point("a-again", 0.98, 1.0, 100)
    smaller = point("smaller", 0.98, 1.0, 99)
    assert pareto_front([a, a_again]) == [a, a_again]
    assert pareto_front([a, a_again, smaller]) == [smaller]


def test_each_target_has_its_own_front():
    slow_x = point("slow", 0.98, 9.0, 100, target="x")
    fast_y = point("fast", 0.98, 1.0, 100, target="y")
    assert pareto_front([slow_x, fast_y]) == [slow_x, fast_y]


def test_regression_lower_rmse_is_better():
    source = measured({"mae": 0.4, "rmse": 0.5}, 56_000, b1=0.1)
    rows = [verdict("t", measured({"mae": 0.3, "rmse": 0.4}, 56_000, b1=0.1), source, task="regression")]
    src, var = points_from_verdicts(rows)
    assert (var.quality_name, var.higher_is_better, var.quality) == ("rmse", False, 0.4)
    assert pareto_front([src, var]) == [var]
    assert pareto_front([point("lo", 0.4, 1, 1, higher=False), point("hi", 0.5, 1, 1, higher=False)])[0].label == "lo"


def test_embedding_higher_cosine_is_better():
    source = measured({"cosine_mean": 1.0, "cosine_min": 1.0}, 56_000, b1=0.1)
    rows = [verdict("t", measured({"cosine_mean": 0.99, "cosine_min": 0.9}, 56_000, b1=0.1), source,
                    task="embedding")]
    src, var = points_from_verdicts(rows)
    assert (var.quality_name, var.higher_is_better) == ("cosine_mean", True)
    assert pareto_front([src, var]) == [src]


def test_without_latency_the_front_is_on_quality_and_size():
    rows = [verdict("gpu", measured({"accuracy": 0.97}, 18_000), measured({"accuracy": 0.98}, 56_000))]
    src, var = points_from_verdicts(rows)
    assert var.latency_ms is None and var.batch is None
    assert pareto_front([src, var]) == [src, var]


@pytest.fixture
def rows() -> list[dict]:
    return [verdict("cpu-x86-int8", measured({"accuracy": 0.97}, 18_000, b1=0.05, b64=1.5), SOURCE),
            verdict("<script>alert(1)</script>", measured({"accuracy": 0.5}, 30_000, b1=0.2), SOURCE, passed=False),
            verdict("gpu", measured({"accuracy": 0.97}, 18_000), measured({"accuracy": 0.98}, 56_000))]


def test_report_is_self_contained(rows, tmp_path):
    out = render_report(points_from_verdicts(rows, "digits-cnn"), tmp_path / "report.html", "Pareto")
    text = out.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]* alt="[^"]+"', text)
    assert len(images) == 3  # one figure per target
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert text.count("<tr") == 1 + 6  # header, and a source and a variant per target


def test_report_escapes_text(rows, tmp_path):
    text = render_report(points_from_verdicts(rows, 'm&"x'), tmp_path / "r.html", "Run <b>1</b> & co").read_text()
    assert "<b>" not in text and "<title>Run &lt;b&gt;1&lt;/b&gt; &amp; co</title>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "m&amp;&quot;x" in text and 'm&"x' not in text
