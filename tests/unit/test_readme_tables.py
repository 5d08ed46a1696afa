"""The README's generated result blocks match benchmarks/results/*.json; a hand edit is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "readme_tables.py"


def _check(readme: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--readme", str(readme)], capture_output=True,
                          text=True)


def test_the_readme_blocks_match_their_json():
    proc = _check(ROOT / "README.md")
    assert proc.returncode == 0, proc.stderr
    text = (ROOT / "README.md").read_text()
    assert "<!-- results:quantize_digits -->" in text and "<!-- results:task_startup -->" in text


def test_a_number_edited_by_hand_is_drift(tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    block = text.index("<!-- results:quantize_digits -->")
    row = text.index("| static qoperator minmax (x86 default) | 17.5 |", block)
    readme.write_text(text[:row] + text[row:].replace("| 17.5 |", "| 16.5 |", 1))
    proc = _check(readme)
    assert proc.returncode == 1 and "results blocks quantize_digits differ" in proc.stderr
    subprocess.run([sys.executable, str(SCRIPT), "--readme", str(readme)], check=True, capture_output=True)
    assert readme.read_text() == text  # regenerated from the JSON, the edit is gone


def test_results_page_lists_every_generated_table_under_its_machine(tmp_path):
    page = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in ("quantize_digits", "quantize_tune_digits", "gpu_targets", "timing_method"):
        assert f"<!-- results:{name} -->" in readme and f"\n## {name}\n" in page
    assert "## Machines" in page and "NVIDIA H200" in page
    edited = tmp_path / "RESULTS.md"
    edited.write_text(page.replace("## Machines", "## Machine", 1))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--results-md", str(edited)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "RESULTS.md differs" in proc.stderr
