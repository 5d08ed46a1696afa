"""Calibration data for static quantization: checked before ONNX Runtime sees it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

    from modelpress.core.artifacts import TensorSpec
    from modelpress.core.data import DatasetSplits


def calibration_batches(
    data: DatasetSplits | None, split: str, samples: int, inputs: tuple[TensorSpec, ...], batch: int = 32
) -> list[dict[str, np.ndarray]]:
    """The first `samples` rows of `split`, every model input fed by name, in feeds of `batch`, checked first."""
    import numpy as np

    if data is None:
        raise ModelpressError(
            "static quantization needs calibration data, and none was given",
            "pass the source model's dataset, or set quantize.mode: dynamic",
        )
    part = data.get(split)
    if len(part) == 0:
        raise ModelpressError(
            f"the calibration set ({data.name} {split} split) is empty",
            "calibrate on a split with samples, or set quantize.mode: dynamic",
        )
    part = part.head(samples)
    feed = {}
    for spec in inputs:
        x = _named(part.inputs, spec, len(inputs))
        per = tuple(x.shape[1:])
        if len(per) != len(spec.shape) or any(isinstance(d, int) and d != p for d, p in zip(spec.shape, per)):
            raise ModelpressError(
                f"calibration samples have shape {per}, but the model's input "
                f"{spec.name!r} takes {tuple(spec.shape)}",
                "calibrate with the dataset the model was trained on",
            )
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ModelpressError(
                f"the calibration set ({data.name} {split} split) contains NaN or infinite values",
                "clean the data before calibrating",
            )
        feed[spec.name] = x.astype(spec.dtype, copy=False)
    return [{k: v[i : i + batch] for k, v in feed.items()} for i in range(0, len(part), batch)]


def _named(arrays: dict[str, np.ndarray], spec: TensorSpec, n_inputs: int) -> np.ndarray:
    if spec.name in arrays:
        return arrays[spec.name]
    if n_inputs == 1 and len(arrays) == 1:  # one input under another name (a built-in dataset, say)
        return next(iter(arrays.values()))
    raise ModelpressError(f"the calibration data has no input {spec.name!r} (it has {', '.join(arrays)})",
                          "calibrate with the data bound to this model in the resolve step")


class ListReader:
    """onnxruntime's CalibrationDataReader protocol over a prepared list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)
