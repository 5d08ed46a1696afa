"""Datasets: train / val / test bound to a model's inputs, handed between tasks as plain `.npz` arrays.

Only the task that *builds* a dataset (resolve) reads files or imports scikit-learn (2 s of
import); every later task reads the `.npz` with numpy alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_SEED = 20160201  # fixed: every run and every test sees the same splits


@dataclass(frozen=True)
class Split:
    """One split: an array per model input (samples on the first axis), and labels if the data has them."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def x(self) -> np.ndarray:
        if len(self.inputs) != 1:
            raise ModelpressError(
                f"this step takes single-input data; the dataset has inputs {', '.join(self.inputs)}",
                "use quantization only (quantize, evaluate) for multi-input models",
            )
        return next(iter(self.inputs.values()))

    @property
    def y(self) -> np.ndarray:
        if self.labels is None:
            raise ModelpressError("this step trains on labels, and the dataset has none",
                                  "name the label column in the recipe's data.label")
        return self.labels

    def head(self, n: int) -> Split:
        return Split({k: v[:n] for k, v in self.inputs.items()}, None if self.labels is None else self.labels[:n])


@dataclass(frozen=True)
class DatasetSplits:
    """train / val / test, bound to a model's inputs by name; `info` records where the data came from."""

    name: str
    seed: int
    train: Split
    val: Split
    test: Split
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def single(cls, name: str, seed: int, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
               y_val: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, input_name: str = "input") -> DatasetSplits:
        """One input with labels: what the built-in datasets and the torch techniques use."""
        return cls(name, seed, Split({input_name: x_train}, y_train), Split({input_name: x_val}, y_val),
                   Split({input_name: x_test}, y_test))

    def get(self, which: str) -> Split:
        if which not in SPLITS:
            raise ModelpressError(f"unknown split {which!r}", f"use one of: {', '.join(SPLITS)}")
        return getattr(self, which)

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of a single-input, labelled split."""
        part = self.get(which)
        return part.x, part.y

    def with_split(self, which: str, x: np.ndarray | None = None, y: np.ndarray | None = None) -> DatasetSplits:
        """A copy with one split's single input and/or labels replaced."""
        part = self.get(which)
        inputs = {next(iter(part.inputs)): x} if x is not None else part.inputs
        return replace(self, **{which: Split(inputs, part.labels if y is None else y)})

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.train.inputs)

    @property
    def has_labels(self) -> bool:
        return self.train.labels is not None

    # The torch techniques read single-input labelled data by these names.
    x_train = property(lambda self: self.train.x)
    y_train = property(lambda self: self.train.y)
    x_val = property(lambda self: self.val.x)
    y_val = property(lambda self: self.val.y)
    x_test = property(lambda self: self.test.x)
    y_test = property(lambda self: self.test.y)

    def save(self, path: str | Path) -> None:
        import numpy as np

        names = self.input_names
        arrays = {f"{s}.x{i}": self.get(s).inputs[n] for s in SPLITS for i, n in enumerate(names)}
        arrays |= {f"{s}.y": self.get(s).labels for s in SPLITS if self.get(s).labels is not None}
        meta = json.dumps({"name": self.name, "seed": self.seed, "inputs": names, "info": self.info})
        with open(path, "wb") as fh:  # a file handle keeps numpy from appending ".npz"
            np.savez_compressed(fh, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> DatasetSplits:
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                arrays = {k: npz[k] for k in npz.files if k != "meta"}
            if "inputs" not in meta:  # written before multi-input data: x_<split>, y_<split>
                return cls.single(meta["name"], meta["seed"], **arrays)
            parts = {s: Split({n: arrays[f"{s}.x{i}"] for i, n in enumerate(meta["inputs"])},
                              arrays.get(f"{s}.y")) for s in SPLITS}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelpressError(
                f"dataset file {path} is unreadable ({exc})", "re-run the resolve step"
            ) from None
        return cls(meta["name"], meta["seed"], info=meta.get("info", {}), **parts)


def _digits(seed: int) -> DatasetSplits:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # 8x8 images with values 0..16, scaled to [0, 1], shaped (N, 1, 8, 8) for convolutions.
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    # 70 / 10 / 20, stratified; the test split (360 images) matches common digits baselines.
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.125, stratify=y_rest, random_state=seed
    )
    return DatasetSplits.single("sklearn-digits", seed, x_train, y_train, x_val, y_val, x_test, y_test)


_LOADERS = {"sklearn-digits": _digits}


def known_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, seed: int = DEFAULT_SEED) -> DatasetSplits:
    """A built-in dataset by name (your own data comes in through `modelpress.core.data_source`)."""
    if name not in _LOADERS:
        raise ModelpressError(
            f"unknown dataset {name!r}", f"use one of: {', '.join(known_datasets())}, or a path or URI to a data file"
        )
    return _LOADERS[name](seed)
