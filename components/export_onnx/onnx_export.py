"""Export a torch model folder to an ONNX model folder (or pass ONNX through)."""

from __future__ import annotations

import warnings
from pathlib import Path

from modelpress.core import artifacts
from modelpress.errors import ModelpressError

OPSET = 17


def export_onnx(model_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir` as an ONNX model folder with a dynamic batch axis."""
    import torch

    manifest = artifacts.read_manifest(model_dir)
    if manifest.format == "onnx":
        src = artifacts.onnx_file(model_dir)
        artifacts.check_onnx(src, str(model_dir))
        return artifacts.save_onnx(out_dir, src, dataset=manifest.dataset)

    module, _ = artifacts.load_torch(model_dir)
    if manifest.format in ("torch-export", "transformers"):
        from modelpress.models.program import examples

        example = examples(manifest.inputs)
        inputs = [i.name for i in manifest.inputs]
        outputs = [o.name for o in manifest.outputs]
        axes = {i.name: {0: "batch", **{n + 1: d for n, d in enumerate(i.shape) if isinstance(d, str)}}
                for i in manifest.inputs}
        axes.update({o.name: {0: "batch"} for o in manifest.outputs})
    else:
        example = (torch.zeros((2, *manifest.input.shape), dtype=torch.float32),)
        inputs, outputs = [manifest.input.name], ["logits"]
        axes = {manifest.input.name: {0: "batch"}, "logits": {0: "batch"}}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / artifacts.ONNX_FILE
    # The TorchScript exporter: 0.1 s here against 6 s for dynamo, which also
    # needs onnxscript and writes a separate .data file. It warns that it is
    # deprecated; revisit when it is removed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, example, str(path), input_names=inputs, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )
        except Exception as exc:
            raise ModelpressError(
                f"could not export {model_dir} to ONNX ({str(exc).splitlines()[0]})",
                "the model must trace with a fixed input shape",
            ) from None
    artifacts.check_onnx(path, f"exported {model_dir}")
    return artifacts.save_onnx(out_dir, path, dataset=manifest.dataset)
