"""MLflow pyfunc loader for modelpress torch-npz folders (a module, never a pickle)."""

from __future__ import annotations

from pathlib import Path


class _Predictor:
    def __init__(self, model_dir: str) -> None:
        from modelpress.core import artifacts

        self.module, self.manifest = artifacts.load_torch(Path(model_dir))

    def predict(self, model_input, params=None):  # noqa: ARG002 - pyfunc signature
        import numpy as np
        import torch

        x = np.asarray(model_input, dtype=np.float32).reshape(-1, *self.manifest.input.shape)
        with torch.no_grad():
            return self.module(torch.from_numpy(x)).numpy()


def _load_pyfunc(data_path: str) -> _Predictor:
    return _Predictor(data_path)
