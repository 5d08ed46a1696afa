"""The teacher: a registry model in a modelpress model folder, torch or ONNX, seen as logits.

A torch teacher also exposes its modules, for feature (hint) distillation. An ONNX
teacher (a registered variant, for example) runs in ONNX Runtime on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.core import artifacts
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch


class Teacher:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = artifacts.validate_model_dir(model_dir, "teacher model")
        self.module: torch.nn.Module | None = None
        self._session = None
        if self.manifest.is_torch:
            self.module, _ = artifacts.load_torch(model_dir)
            self.module.eval()
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(
                str(artifacts.onnx_file(model_dir)), sess_options=opts, providers=["CPUExecutionProvider"]
            )

    @property
    def kind(self) -> str:
        return self.manifest.format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch; never a gradient."""
        import torch

        with torch.no_grad():
            if self.module is not None:
                return self.module(x)
            feed = {self.manifest.input.name: x.detach().cpu().numpy()}
            return torch.from_numpy(self._session.run(None, feed)[0])  # type: ignore[union-attr]

    def parameters(self) -> int:
        """Parameter count (ONNX: elements of every initializer)."""
        if self.module is not None:
            return sum(p.numel() for p in self.module.parameters())
        import math

        import onnx

        model = onnx.load(str(artifacts.onnx_file(self.model_dir)))
        return sum(math.prod(t.dims) for t in model.graph.initializer)

    def torch_module(self, why: str) -> torch.nn.Module:
        if self.module is None:
            raise ModelpressError(
                f"{why} needs a torch teacher, but the teacher is {self.kind}",
                f"register the teacher as a torch model (mlflow.pytorch.log_model), or drop {why}",
            )
        return self.module
