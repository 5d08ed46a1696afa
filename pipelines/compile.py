"""Compile the pipeline (and each component) to KFP IR YAML a cluster accepts unchanged.

    python -m modelpress.pipelines.compile [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from modelpress.errors import ModelpressError


def components() -> dict:
    """Every component the pipeline uses: the fixed steps and each registered technique's."""
    from modelpress.components.check_registered.component import check_registered
    from modelpress.components.evaluate.component import evaluate
    from modelpress.components.export_onnx.component import export_onnx
    from modelpress.components.gate.component import gate
    from modelpress.components.register.component import register
    from modelpress.components.resolve.component import resolve
    from modelpress.components.summarize.component import summarize
    from modelpress.components.validate_data.component import validate_data
    from modelpress.core.technique import techniques

    steps = [check_registered, resolve, validate_data, export_onnx, *(c for t in techniques() for c in t.components()),
             evaluate, gate, register, summarize]
    return {c.name: c for c in steps}


def _writable_folder(folder: Path, flag: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise ModelpressError(f"{folder} is a file, and {flag} writes into a folder",
                              f"give {flag} a folder (created when absent), e.g. build/kfp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelpressError(f"cannot create {folder} ({exc.strerror or exc})", f"give {flag} a writable place") \
            from None


def compile_pipeline(path: Path, recipe: Any = None) -> Path:
    """The pipeline as IR YAML; with a (validated) recipe, its sections are the parameters' defaults."""
    from kfp import compiler

    from modelpress.pipelines.compress import build_pipeline

    _writable_folder(path.parent, "--output")
    if path.is_dir():
        raise ModelpressError(f"{path} is a folder", "give --output a file name, e.g. build/compress.yaml")
    compiler.Compiler().compile(build_pipeline(recipe), str(path))
    return path


def compile_all(out_dir: Path, recipe: Any = None) -> list[Path]:
    """Every component and the pipeline, one YAML each."""
    from kfp import compiler

    _writable_folder(out_dir, "--all")
    written = [compile_pipeline(out_dir / "compress.yaml", recipe)]
    for name, comp in components().items():
        path = out_dir / "components" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(comp, str(path))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in compile_all(Path(sys.argv[1] if len(sys.argv) > 1 else "build/kfp")):
        print(p)
