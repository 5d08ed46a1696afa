"""The export step: the untouched source as ONNX, the baseline every target's candidate is measured against."""

from __future__ import annotations

from pathlib import Path

from modelpress.core.artifacts import read_notes, write_notes
from modelpress.core.progress import say


def export_step(model_in: Path, model_out: Path) -> None:
    from modelpress.components.export_onnx.onnx_export import export_onnx

    export_onnx(Path(model_in), Path(model_out))
    write_notes(Path(model_out), read_notes(Path(model_in)))  # the source's notes (how it was loaded)
    say(f"exported ONNX to {model_out}")
