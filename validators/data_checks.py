"""Data checks: the splits a run trains, calibrates and evaluates on, validated with Great Expectations.

Each split becomes two small tables: one row per sample (per input: feature count, NaN,
infinity and out-of-range counts; the label) and one row per class (its share of the split). An
expectation suite defined here, in code, runs on each through an ephemeral GX context.
GX takes seconds to import, so only this module imports it, and only when it validates.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from modelpress.core.config import FrozenConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelpress.core.data import DatasetSplits

# What the steps use each split for: a bad split is reported with its role.
ROLES = {"train": "training and calibration", "val": "model selection", "test": "evaluation"}


class DataChecksConfig(FrozenConfig):
    enabled: bool = Field(default=True, description="Validate the dataset before any step uses it.")
    value_range: tuple[float, float] | None = Field(
        default=None,
        description="Inclusive [low, high] every float input value must lie in; None: each feature's train "
        "range widened by `range_margin` spans (integer inputs: the model's vocabulary, or the train range).",
    )
    range_margin: float = Field(
        default=2.0, ge=0.0, le=1000.0,
        description="How far past a feature's train range a val/test value may lie, in spans of that range "
        "(each span at least a tenth of the whole input's); 2 passes real standardized data "
        "(benchmarks/data_range_rule.py).",
    )
    min_class_share: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="Each class must hold at least this fraction of an even share of its split "
        "(0.5 with 10 classes: at least 5% of the samples).",
    )
    min_rows: int = Field(default=1, ge=1, le=10**9, description="Fewest samples a split may have.")

    @model_validator(mode="after")
    def _range(self) -> DataChecksConfig:
        if self.value_range is not None and self.value_range[0] > self.value_range[1]:
            raise ValueError(f"value_range low {self.value_range[0]} is above high {self.value_range[1]}")
        return self


@dataclass(frozen=True)
class CheckResult:
    split: str
    expectation: str
    column: str | None
    passed: bool
    observed: str

    @property
    def name(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass(frozen=True)
class DataReport:
    dataset: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def reason(self) -> str:
        if self.passed:
            return "all data expectations met"
        return "; ".join(f"{r.split} split ({ROLES.get(r.split, r.split)}): {r.name} failed, {r.observed}"
                         for r in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "passed": self.passed, "reason": self.reason(),
                "results": [asdict(r) for r in self.results]}


def sample_table(inputs: dict[str, np.ndarray], labels: np.ndarray | None,
                 ranges: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """One row per sample, a few columns per input: what the expectations look at, not one column per value."""
    import numpy as np
    import pandas as pd

    columns: dict[str, np.ndarray] = {}
    n = len(next(iter(inputs.values())))
    for name, x in inputs.items():
        flat = np.asarray(x).reshape(n, -1)
        values = flat.astype(np.float64, copy=False)
        lo, hi = ranges[name]
        if lo.size not in (1, flat.shape[1]):  # a wrong shape (its own expectation fails): whole-input range
            lo, hi = lo.min(), hi.max()
        with np.errstate(invalid="ignore"):
            outside = ((values < lo) | (values > hi)) & np.isfinite(values)
        columns |= {f"{name}.feature_count": np.full(n, flat.shape[1], dtype=np.int64),
                    f"{name}.nan_count": np.isnan(values).sum(axis=1),
                    f"{name}.inf_count": np.isinf(values).sum(axis=1),
                    f"{name}.out_of_range": outside.sum(axis=1)}
    if labels is not None:
        y = np.asarray(labels)
        if len(y) != n:
            from modelpress.errors import ModelpressError

            raise ModelpressError(f"{n} samples but {len(y)} labels", "rebuild the dataset file")
        if y.dtype.kind == "f":
            columns["label.nan_count"] = (~np.isfinite(y.reshape(n, -1))).sum(axis=1)
        else:
            columns["label"] = y.reshape(n)
    return pd.DataFrame(columns)


def allowed_ranges(data: DatasetSplits, config: DataChecksConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per input, the lowest and highest value each feature may take (arrays broadcast over features).

    Token ids: the embedding table's rows. Other integers (masks, codes): the train split's own range.
    Floats: each feature's train range widened by `range_margin` spans, a span being at least a
    tenth of the whole input's, so features constant in train (a blank pixel) still get room.
    """
    import numpy as np

    vocab = data.info.get("vocabularies", {})
    out = {}
    for name, x in data.train.inputs.items():
        flat = np.asarray(x).reshape(len(x), -1).astype(np.float64)
        finite = np.where(np.isfinite(flat), flat, np.nan)
        if name in vocab:
            out[name] = (np.array(0.0), np.array(float(vocab[name] - 1)))
        elif x.dtype.kind in "biu":
            out[name] = (np.array(float(np.nanmin(finite))), np.array(float(np.nanmax(finite))))
        elif config.value_range is not None:
            out[name] = (np.array(config.value_range[0]), np.array(config.value_range[1]))
        else:
            with np.errstate(all="ignore"):
                lo, hi = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
            lo, hi = np.nan_to_num(lo), np.nan_to_num(hi)
            span = np.maximum(hi - lo, 0.1 * (float(hi.max() - lo.min()) if hi.size else 0.0))
            out[name] = (lo - config.range_margin * span, hi + config.range_margin * span)
    return out


def class_table(y: np.ndarray) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    labels, counts = np.unique(np.asarray(y), return_counts=True)
    return pd.DataFrame({"label": labels, "share": counts / max(1, counts.sum())})


def gx_context() -> Any:
    """An ephemeral GX context: nothing written to disk, nothing kept between tasks."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a pipeline task
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    try:  # no tqdm bars in task logs: one line per step is the progress we print
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):  # the knob moved; bars are cosmetic
        pass
    return context


def _suites(config: DataChecksConfig, data: DatasetSplits, features: dict[str, int | None], labels: list[int] | None):
    """The expectation suites every split must meet, built in code (GX imported here)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    samples = gx.ExpectationSuite(name="samples")
    samples.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=config.min_rows))
    for name, count in features.items():
        if count is not None:  # a dynamic axis (sequence length) may differ between splits
            samples.add_expectation(gxe.ExpectColumnValuesToBeBetween(
                column=f"{name}.feature_count", min_value=count, max_value=count))
        for col in ("nan_count", "inf_count", "out_of_range"):
            samples.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=f"{name}.{col}", min_value=0, max_value=0))
    if data.info.get("task") == "regression":
        samples.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="label.nan_count", min_value=0, max_value=0))
    if labels is None:
        return samples, None
    samples.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    classes = gx.ExpectationSuite(name="classes")
    classes.add_expectation(gxe.ExpectColumnValuesToBeBetween(
        column="share", min_value=config.min_class_share / max(1, len(labels))))
    classes.add_expectation(gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=labels))
    return samples, classes


def _observed(result: Any) -> str:
    r = result.result or {}
    if "unexpected_count" in r:
        sample = r.get("partial_unexpected_list") or []
        return (f"{r['unexpected_count']} of {r.get('element_count', '?')} rows unexpected"
                + (f" (e.g. {sample[:3]})" if sample else ""))
    return f"observed {r.get('observed_value')!r}"


def check_dataset(data: DatasetSplits, config: DataChecksConfig) -> DataReport:
    """Validate every split; the train split sets the expected shapes, classes and value ranges."""
    import numpy as np

    from modelpress.errors import ModelpressError

    # Nothing to check on, and nothing later steps could use: refused here, with the split named.
    empty = [s for s in ("train", "val", "test") if len(next(iter(data.get(s).inputs.values()))) == 0]
    if empty:
        raise ModelpressError(f"dataset {data.name}: the {' and '.join(empty)} split{'s' * (len(empty) > 1)} "
                              f"{'have' if len(empty) > 1 else 'has'} no samples",
                              "give every split at least one row, or drop the split column or files and let "
                              "modelpress split the data (data.split)")
    classification = data.has_labels and data.info.get("task", "classification") == "classification"
    labels = sorted(int(v) for v in np.unique(data.train.labels)) if classification else None
    fixed = data.info.get("fixed_inputs")  # names of inputs without a dynamic axis; None: all of them
    features = {n: (int(np.prod(x.shape[1:])) if fixed is None or n in fixed else None)
                for n, x in data.train.inputs.items()}
    ranges = allowed_ranges(data, config)
    context = gx_context()
    samples, classes = _suites(config, data, features, labels)
    batch_def = context.data_sources.add_pandas("modelpress").add_dataframe_asset("splits") \
        .add_batch_definition_whole_dataframe("split")
    out: list[CheckResult] = []
    for split in ("train", "val", "test"):
        part = data.get(split)
        tables = [(samples, sample_table(part.inputs, part.labels, ranges))]
        if classes is not None:
            tables.append((classes, class_table(part.labels)))
        for suite, table in tables:
            validation = batch_def.get_batch(batch_parameters={"dataframe": table}).validate(suite)
            for res in validation.results:
                cfg = res.expectation_config
                out.append(CheckResult(split, cfg.type, cfg.kwargs.get("column"), bool(res.success),
                                       _observed(res)))
    return DataReport(data.name, tuple(out))


def render_markdown(report: DataReport) -> str:
    lines = [f"# Data checks: {report.dataset}", "",
             f"**{'PASSED' if report.passed else 'FAILED'}**: {report.reason()}", "",
             "| split | expectation | column | result | observed |", "|---|---|---|---|---|"]
    lines += [f"| {r.split} | {r.expectation} | {r.column or '—'} | {'pass' if r.passed else 'FAIL'} | "
              f"{r.observed.replace('|', '/')} |" for r in report.results]
    return "\n".join(lines) + "\n"
