"""The Pareto report as a person sees it: headless Chromium renders it, and the plots are on the screen."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modelpress.components.summarize.pareto import points_from_verdicts, render_report
from tests.unit.test_pareto_report import SOURCE, measured, verdict

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 1200, 1600


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no headless browser to render the report: install Chromium "
                "(Debian/Ubuntu, as root: apt-get install -y chromium); .ci/run installs it when run as root")


def screenshot(page: Path, out: Path) -> np.ndarray:
    """The page's first WIDTH x HEIGHT pixels, RGB in [0, 1]."""
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={out.parent / 'profile'}",
           f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={out}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.exists(), f"{' '.join(cmd)} wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    from matplotlib.image import imread

    shot = imread(out)[..., :3]
    assert shot.shape[:2] == (HEIGHT, WIDTH)
    return shot


MAGENTA = (1.0, 0.0, 1.0)  # a colour the report never draws: it marks where the plots lie


def solid_png(width: int, height: int, colour: tuple[float, float, float]) -> str:
    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, np.ones((height, width, 3)) * np.array(colour), format="png")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_plots_are_visible(tmp_path):
    rows = [verdict("cpu-x86-int8", measured({"accuracy": 0.97}, 18_000, b1=0.05, b64=1.5), SOURCE),
            verdict("cpu-arm", measured({"accuracy": 0.90}, 30_000, b1=0.2, b64=0.9), SOURCE, passed=False)]
    report = render_report(points_from_verdicts(rows, "digits-cnn"), tmp_path / "report.html", "Pareto report")
    # The control page: the same page with each plot swapped for a magenta PNG of its size, which shows
    # where the plots should be. A plot that failed to decode collapses to its alt text and moves the rest.
    text = report.read_text()
    sizes = [(int(w), int(h))
             for w, h in re.findall(r'<img src="data:[^"]+"[^>]*? width="(\d+)" height="(\d+)"', text)]
    assert len(sizes) == 2, "expected one <img> with width and height per target"
    control = tmp_path / "control.html"
    solid = iter(solid_png(w, h, MAGENTA) for w, h in sizes)
    control.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+",
                              lambda _: f"data:image/png;base64,{next(solid)}", text))

    shot = screenshot(report, tmp_path / "report.png")
    plain = screenshot(control, tmp_path / "control.png")
    boxes = np.abs(plain - np.array(MAGENTA)).max(axis=-1) < 0.05
    assert boxes.sum() >= sizes[0][0] * sizes[0][1], "the first plot is not shown in full (hidden, or off the window)"
    # Outside the plots the two pages match: the report laid its images out at their full size.
    moved = np.abs(shot - plain).max(axis=-1)[~boxes] > 0.05
    assert moved.mean() < 0.001, f"{moved.mean():.2%} of the page outside the plots differs: its layout moved"
    # Inside them: a plot on a white background, with lines, text and coloured markers on it.
    inside = shot[boxes]
    ink = inside.min(axis=-1) < 0.9
    assert 0.03 < ink.mean() < 0.5, f"{ink.mean():.1%} of the plot area is drawn on"
    colourful = (inside.max(axis=-1) - inside.min(axis=-1)) > 0.4  # the blue star, green dot, red cross
    assert colourful.sum() > 200
