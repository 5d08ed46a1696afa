"""Calibration data for static quantization: checked before ONNX Runtime sees it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

    from modelpress.core.artifacts import InputSpec
    from modelpress.core.data import DatasetSplits


def calibration_batches(
    data: DatasetSplits | None, split: str, samples: int, input_spec: InputSpec, batch: int = 32
) -> list[dict[str, np.ndarray]]:
    """The first `samples` rows of `split`, in feeds of `batch`, shape-checked against the model."""
    import numpy as np

    if data is None:
        raise ModelpressError(
            "static quantization needs calibration data, and none was given",
            "pass the source model's dataset, or set quantize.mode: dynamic",
        )
    x, _ = data.split(split)
    if len(x) == 0:
        raise ModelpressError(
            f"the calibration set ({data.name} {split} split) is empty",
            "calibrate on a split with samples, or set quantize.mode: dynamic",
        )
    if tuple(x.shape[1:]) != tuple(input_spec.shape):
        raise ModelpressError(
            f"calibration samples have shape {tuple(x.shape[1:])}, but the model's input "
            f"{input_spec.name!r} takes {tuple(input_spec.shape)}",
            "calibrate with the dataset the model was trained on",
        )
    if not np.isfinite(x[:samples]).all():
        raise ModelpressError(
            f"the calibration set ({data.name} {split} split) contains NaN or infinite values",
            "clean the data before calibrating",
        )
    x = x[:samples].astype(np.float32, copy=False)
    return [{input_spec.name: x[i : i + batch]} for i in range(0, len(x), batch)]


class ListReader:
    """onnxruntime's CalibrationDataReader protocol over a prepared list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)
