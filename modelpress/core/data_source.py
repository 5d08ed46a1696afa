"""Where a run's data comes from: a file by URI (npz, Parquet, CSV), split into train / val / test.

The recipe's `data:` section names it; without one, the source model's `modelpress.dataset`
tag does (a built-in name such as `sklearn-digits`, a path or a URI). What comes out is one
table of columns per split plus a record of how it was read and split, which travels to the
variant. Columns are matched to model inputs afterwards (`binding.py`).

Splits come from the data when it has them (one file per split, `<name>_<split>` arrays in an
npz, or a split column), else from a seeded split of all rows (stratified by class where the
labels are classes), and the seed and fractions are recorded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from modelpress.core.config import FrozenConfig
from modelpress.core.data import DEFAULT_SEED, SPLITS
from modelpress.core.tasks import is_integral
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import numpy as np

Table = dict[str, "np.ndarray"]  # column name -> values, rows on the first axis

LABEL_NAMES = ("label", "labels", "target", "y")  # label columns found without data.label
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
FORMATS = {".npz": "npz", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class SplitConfig(FrozenConfig):
    val: float = Field(default=0.1, ge=0.0, le=0.5,
                       description="Share of the rows held out for validation (model selection) when the "
                       "data has no splits of its own.")
    test: float = Field(default=0.2, gt=0.0, le=0.5,
                        description="Share of the rows held out for evaluation when the data has no splits.")
    seed: int = Field(default=DEFAULT_SEED, ge=0, le=2**32 - 1, description="Seed of that split (recorded).")
    stratify: bool = Field(default=True, description="Keep each class's share equal across splits when the "
                           "labels are classes (integers).")


class RunInputRef(FrozenConfig):
    run_id: str | None = Field(default=None, min_length=1, max_length=64,
                               description="Run that logged the dataset as an input; None: the source model's run.")
    name: str | None = Field(default=None, min_length=1, max_length=500, description="Dataset name, if several.")
    context: str | None = Field(default=None, min_length=1, max_length=100,
                                description="Input context (e.g. training), if several.")


class DataConfig(FrozenConfig):
    uri: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="One file with every row: a local path or any MLflow artifact URI (runs:/, models:/, "
        "mlflow-artifacts:/, s3://, ...). Splits come from a split column, or a seeded split.")
    train: str | None = Field(default=None, min_length=1, max_length=2000,
                              description="A file per split instead of `uri`: the training split.")
    val: str | None = Field(default=None, min_length=1, max_length=2000,
                            description="The validation split's file; None: `split.val` of the train file.")
    test: str | None = Field(default=None, min_length=1, max_length=2000, description="The evaluation split's file.")
    run_input: RunInputRef | None = Field(default=None,
                                          description="An MLflow dataset logged as a run input, instead of `uri`.")
    format: Literal["auto", "npz", "parquet", "csv"] = Field(
        default="auto", description="File format; auto: from the file name (.npz, .parquet, .csv).")
    label: str | None = Field(default=None, min_length=1, max_length=500,
                              description="Column holding the labels; None: a column named label, labels, target "
                              "or y if there is one, else no labels (an embedding model).")
    split_column: str | None = Field(default=None, min_length=1, max_length=500,
                                     description="Column naming each row's split (train, val, test); None: a "
                                     "column named split if there is one.")
    inputs: dict[str, str | tuple[str, ...]] = Field(
        default_factory=dict,
        description="Model input -> the column holding it, or several scalar columns stacked as its features. "
        "Unlisted inputs take the column of the same name; a single-input model takes every other "
        "numeric column.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="The seeded split, when the data has none.")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        per_split = [k for k in ("train", "val", "test") if getattr(self, k)]
        kinds = [k for k, on in (("uri", self.uri), ("train/val/test", per_split),
                                 ("run_input", self.run_input)) if on]
        if len(kinds) > 1:
            raise ValueError(f"give the data one way, not {' and '.join(kinds)}")
        if per_split and not (self.train and self.test):
            raise ValueError("per-split files need at least train and test (val defaults to a share of train)")
        return self


@dataclass(frozen=True)
class RawData:
    """Columns per split, the label column (if any), and how they were read and split."""

    tables: dict[str, Table]
    label: str | None
    provenance: dict[str, Any] = field(default_factory=dict)


def read_data(config: DataConfig, tag: str | None, run_id: str | None, client: Any) -> RawData:
    """The recipe's data, or else the source's `modelpress.dataset` tag, as split tables."""
    with tempfile.TemporaryDirectory(prefix="modelpress-data-") as tmp:
        if config.run_input is not None:
            from modelpress.core.run_inputs import fetch_run_input

            ref = config.run_input
            rid = ref.run_id or run_id
            if rid is None:
                raise ModelpressError("data.run_input has no run_id and the source version has no run",
                                      "set data.run_input.run_id")
            path, origin = fetch_run_input(client, rid, Path(tmp), name=ref.name, context=ref.context)
            return _split(_read(path, config.format, f"dataset input of run {rid}"), config,
                          {"run_input": origin})
        if config.train:
            files = {s: getattr(config, s) for s in SPLITS if getattr(config, s)}
            tables = {s: _read(_local(u, Path(tmp) / s, client), config.format, u) for s, u in files.items()}
            return _split_files(tables, config, {"files": files})
        uri = config.uri or tag
        if uri is None:
            raise ModelpressError("no data to evaluate the model on: the recipe has no data section and the source "
                                  "version no modelpress.dataset tag",
                                  "add data: {uri: <path or runs:/ URI of a .parquet, .csv or .npz>} to the recipe")
        return _split(_read(_local(uri, Path(tmp), client), config.format, uri), config, {"uri": uri})


def _local(uri: str, dst: Path, client: Any) -> Path:
    """A local path as it is; an MLflow artifact URI (any scheme MLflow's repositories know) downloaded."""
    if "://" not in uri and not uri.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        path = Path(uri).expanduser()
        if not path.exists():
            raise ModelpressError(f"data file {uri} not found", "give an existing path or an artifact URI (runs:/...)")
        return path
    import mlflow
    from mlflow.exceptions import MlflowException

    dst.mkdir(parents=True, exist_ok=True)
    try:
        from modelpress.registry.store import fluent

        with fluent(client):  # runs:/ and models:/ URIs resolve through MLflow's global URIs
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelpressError(f"data {uri} could not be read ({reason})",
                              "check the URI: `mlflow artifacts list --run-id <run>` lists a run's files") from None


def _format(path: Path, fmt: str, what: str) -> str:
    if fmt != "auto":
        return fmt
    if path.is_dir():
        if any(path.glob("*.parquet")):
            return "parquet"  # a folder of Parquet parts
        found = [p for p in path.iterdir() if p.suffix in FORMATS]
        if len(found) == 1:
            return _format(found[0], fmt, what)
    found_fmt = FORMATS.get(path.suffix.lower()) or (".csv" in path.suffixes and "csv")
    if not found_fmt:
        raise ModelpressError(f"data {what}: cannot tell the format of {path.name}",
                              "use a .npz, .parquet or .csv file, or set data.format")
    return found_fmt


def _read(path: Path, fmt: str, what: str) -> Table:
    fmt = _format(path, fmt, what)
    if path.is_dir() and fmt != "parquet":
        path = next(p for p in path.iterdir() if p.suffix in FORMATS)
    try:
        table = {"npz": _read_npz, "parquet": _read_parquet, "csv": _read_csv}[fmt](path)
    except ModelpressError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow, pandas and numpy each raise their own
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelpressError(f"data {what} is not a readable {fmt} file ({reason})",
                              "check the file, or set data.format") from None
    return table


def _same_rows(table: Table, what: str) -> Table:
    lengths = {k: len(v) for k, v in table.items()}
    if len(set(lengths.values())) > 1:
        raise ModelpressError(f"data {what}: columns have different row counts ({lengths})",
                              "write every column with one value per row")
    return table


def _read_npz(path: Path) -> Table:
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if "meta" in arrays and "train.x0" in arrays:  # a dataset file modelpress itself wrote
        import json

        meta = json.loads(str(arrays.pop("meta")))
        out: Table = {}
        for s in SPLITS:
            out |= {f"{n}_{s}": arrays[f"{s}.x{i}"] for i, n in enumerate(meta["inputs"])}
            if f"{s}.y" in arrays:
                out[f"label_{s}"] = arrays[f"{s}.y"]
        return out
    arrays.pop("meta", None)
    return arrays


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: _column(name, col.combine_chunks()) for name, col in zip(table.column_names, table.columns)}


def _column(name: str, arr: Any) -> np.ndarray:
    """An Arrow column as numpy; list columns (token ids, say) of one length per row become 2-D and deeper."""
    import numpy as np
    import pyarrow as pa

    if arr.null_count:
        raise ModelpressError(f"data column {name!r} has {arr.null_count} missing values",
                              "fill or drop them before logging the data")
    shape = [len(arr)]
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        lengths = np.unique(arr.value_lengths().to_numpy(zero_copy_only=False)) if len(arr) else np.array([0])
        if len(lengths) > 1:
            raise ModelpressError(f"data column {name!r} holds lists of different lengths ({lengths.min()} to "
                                  f"{lengths.max()})", "pad every row to one length (padding='max_length')")
        shape.append(int(lengths[0]))
        arr = arr.flatten()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return np.asarray(arr.to_pylist(), dtype=object).reshape(shape)
    return arr.to_numpy(zero_copy_only=False).reshape(shape)


def _read_csv(path: Path) -> Table:
    import pandas as pd

    frame = pd.read_csv(path)
    missing = frame.columns[frame.isna().any()].tolist()
    if missing:
        raise ModelpressError(f"data columns {missing} have missing values", "fill or drop them before logging")
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def _label_name(columns: list[str], config: DataConfig, what: str) -> str | None:
    if config.label is not None:
        if config.label not in columns:
            raise ModelpressError(f"data.label {config.label!r} is not a column of {what} (columns: "
                                  f"{_names(columns)})", "set data.label to the label column")
        return config.label
    return next((c for c in LABEL_NAMES if c in columns), None)


def _names(columns: list[str]) -> str:
    return ", ".join(columns[:12]) + (f", ... ({len(columns)} in all)" if len(columns) > 12 else "")


def _split_files(tables: dict[str, Table], config: DataConfig, origin: dict[str, Any]) -> RawData:
    tables = {s: _same_rows(t, f"{s} split") for s, t in tables.items()}
    label = _label_name(list(tables["train"]), config, "the train file")
    method: dict[str, Any] = {"method": "files"}
    if "val" not in tables:
        rest, val, how = _seeded(tables["train"], label, config.split.val, config.split)
        tables = {**tables, "train": rest, "val": val}
        method = {"method": "files; val drawn from train", **how}
    return RawData(tables, label, {**origin, "split": method})


def _split(table: Table, config: DataConfig, origin: dict[str, Any]) -> RawData:
    import numpy as np

    suffixed = {s: {k.removesuffix(f"_{s}"): v for k, v in table.items() if k.endswith(f"_{s}")} for s in SPLITS}
    if table and sum(len(t) for t in suffixed.values()) == len(table) and suffixed["train"] and suffixed["test"]:
        return _split_files({s: t for s, t in suffixed.items() if t}, config, {**origin, "arrays": "<name>_<split>"})
    what = origin.get("uri", "the data")
    table = _same_rows(table, what)
    label = _label_name(list(table), config, what)
    column = config.split_column or ("split" if "split" in table else None)
    if column is not None:
        if column not in table:
            raise ModelpressError(f"data.split_column {column!r} is not a column of {what} "
                                  f"(columns: {_names(list(table))})", "set it to the column naming each row's split")
        values = np.asarray(table[column]).astype(str)
        unknown = sorted({str(v) for v in np.unique(values)} - set(SPLIT_NAMES))
        if unknown:
            raise ModelpressError(f"split column {column!r} holds {unknown[:5]}, not train/val/test",
                                  "name each row's split train, val (or validation) or test")
        which = np.vectorize(SPLIT_NAMES.get)(values) if len(values) else values
        rest = {k: v for k, v in table.items() if k != column}
        tables = {s: {k: v[which == s] for k, v in rest.items()} for s in SPLITS}
        return RawData(tables, label, {**origin, "split": {"method": f"column {column}"}})
    train_val, test, how = _seeded(table, label, config.split.test, config.split)
    train, val, _ = _seeded(train_val, label, config.split.val / (1 - config.split.test), config.split)
    fractions = {"train": round(1 - config.split.val - config.split.test, 4), "val": config.split.val,
                 "test": config.split.test}
    return RawData({"train": train, "val": val, "test": test}, label,
                   {**origin, "split": {"method": "seeded", "fractions": fractions, **how}})


def _seeded(table: Table, label: str | None, share: float, config: SplitConfig) -> tuple[Table, Table, dict]:
    """Rows split in two, reproducibly; stratified by class when the labels are integers."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    n = len(next(iter(table.values())))
    index = np.arange(n)
    how: dict[str, Any] = {"seed": config.seed, "stratified": False}
    if share <= 0 or n < 2:
        return table, {k: v[:0] for k, v in table.items()}, how
    y = table.get(label) if label else None
    strata = None
    if config.stratify and y is not None and is_integral(y):
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2:
            strata = y
        else:
            how["not_stratified"] = "a class has a single row"
    keep, held = train_test_split(index, test_size=share, random_state=config.seed, stratify=strata)
    how["stratified"] = strata is not None
    keep, held = np.sort(keep), np.sort(held)
    return {k: v[keep] for k, v in table.items()}, {k: v[held] for k, v in table.items()}, how

