"""Datasets: fixed, seeded splits handed between tasks as plain `.npz` arrays.

Only the task that *builds* a dataset imports scikit-learn (2 s of import);
every later task reads the `.npz` with numpy alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_SEED = 20160201  # fixed: every run and every test sees the same splits


@dataclass(frozen=True)
class DatasetSplits:
    name: str
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        if which not in SPLITS:
            raise ModelpressError(f"unknown split {which!r}", f"use one of: {', '.join(SPLITS)}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def save(self, path: str | Path) -> None:
        import numpy as np

        arrays = {f"{k}_{s}": getattr(self, f"{k}_{s}") for s in SPLITS for k in ("x", "y")}
        meta = json.dumps({"name": self.name, "seed": self.seed})
        with open(path, "wb") as fh:  # a file handle keeps numpy from appending ".npz"
            np.savez_compressed(fh, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> DatasetSplits:
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                arrays = {k: npz[k] for k in npz.files if k != "meta"}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelpressError(
                f"dataset file {path} is unreadable ({exc})", "re-run the resolve step"
            ) from None
        return cls(name=meta["name"], seed=meta["seed"], **arrays)


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
    return DatasetSplits("sklearn-digits", seed, x_train, y_train, x_val, y_val, x_test, y_test)


_LOADERS = {"sklearn-digits": _digits}


def known_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, seed: int = DEFAULT_SEED) -> DatasetSplits:
    """A built-in dataset by name, or your own splits: a path to an `.npz` written by `DatasetSplits.save`."""
    if name.endswith(".npz"):
        if not Path(name).is_file():
            raise ModelpressError(f"dataset file {name} not found", "register the model with an existing .npz path")
        return DatasetSplits.load(name)
    if name not in _LOADERS:
        raise ModelpressError(
            f"unknown dataset {name!r}", f"use one of: {', '.join(known_datasets())}, or a path to an .npz"
        )
    return _LOADERS[name](seed)
