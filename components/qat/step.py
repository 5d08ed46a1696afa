"""The per-target step that makes the ONNX model its quantize step gets.

With `quantize.qat`: quantization-aware fine-tuning of the (pruned) torch model for this target's
INT8 settings, then an ONNX export. Without it: an export of the model the target-independent
techniques changed, or, when none ran, the baseline ONNX unchanged (no second export).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from modelpress.core.artifacts import read_notes, write_notes
from modelpress.core.progress import for_target, say


def weights_changed(notes: dict) -> bool:
    """Whether a target-independent technique changed the model (each one that ran left its notes)."""
    from modelpress.core.technique import techniques

    return any(t.name in notes for t in techniques() if not t.per_target)


def qat_step(config_json: str, target: str, model_in: Path, baseline_onnx: Path, dataset: Path,
             onnx_out: Path) -> dict[str, float]:
    from modelpress.components.deep_compress.files import COMPRESSED_FILE
    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.components.technique_step import apply_technique, parse_section
    from modelpress.core.technique import get_technique

    for_target(target)
    quantize = parse_section(get_technique("qat"), config_json)
    notes = read_notes(Path(model_in))
    if quantize.qat is None:
        if not weights_changed(notes):
            shutil.copytree(baseline_onnx, onnx_out, dirs_exist_ok=True)
            say("qat: off (no quantize.qat in the recipe); the source's ONNX passes through")
            return {}
        export_onnx(Path(model_in), Path(onnx_out))
        write_notes(Path(onnx_out), notes)
        # A deep-compressed model's file travels beside its decoded ONNX export, up to registration.
        if (Path(model_in) / COMPRESSED_FILE).is_file():
            shutil.copyfile(Path(model_in) / COMPRESSED_FILE, Path(onnx_out) / COMPRESSED_FILE)
        say("qat: off; exported the distilled/pruned model to ONNX")
        return {}
    with tempfile.TemporaryDirectory(prefix="modelpress-qat-") as tmp:
        result = apply_technique("qat", quantize, model_in, dataset, Path(tmp) / "tuned", target=target)
        export_onnx(result.model_dir, Path(onnx_out))
    write_notes(Path(onnx_out), {**notes, "qat": result.notes})
    say("qat: exported the fine-tuned model to ONNX")
    return result.metrics
