"""Data checks: the splits a run trains, calibrates and evaluates on, validated with Great Expectations.

Each split becomes two small tables: one row per sample (label, feature count, NaN and
infinity counts, min and max) and one row per class (its share of the split). An
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
        description="Inclusive [low, high] every feature value must lie in; None: the train split's own "
        "range, so the val and test splits may not leave it.",
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


def sample_table(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """One row per sample: what the expectations look at, without one column per pixel."""
    import numpy as np
    import pandas as pd

    flat = np.asarray(x).reshape(len(x), -1).astype(np.float64, copy=False)
    if len(np.asarray(y).reshape(-1)) != len(flat):
        from modelpress.errors import ModelpressError

        raise ModelpressError(f"{len(flat)} samples but {len(y)} labels", "rebuild the dataset file")
    finite = np.where(np.isfinite(flat), flat, np.nan)
    with np.errstate(all="ignore"):
        lo = np.nanmin(finite, axis=1) if flat.shape[1] else np.full(len(flat), np.nan)
        hi = np.nanmax(finite, axis=1) if flat.shape[1] else np.full(len(flat), np.nan)
    return pd.DataFrame({
        "label": np.asarray(y).reshape(-1),
        "feature_count": np.full(len(flat), flat.shape[1], dtype=np.int64),
        "nan_count": np.isnan(flat).sum(axis=1),
        "inf_count": np.isinf(flat).sum(axis=1),
        "min_value": lo,
        "max_value": hi,
    })


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


def _suites(config: DataChecksConfig, features: int, labels: list[int], value_range: tuple[float, float]):
    """The expectation suites every split must meet, built in code (GX imported here)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    samples = gx.ExpectationSuite(name="samples")
    for e in (
        gxe.ExpectTableColumnsToMatchSet(column_set=["label", "feature_count", "nan_count", "inf_count",
                                                     "min_value", "max_value"], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=config.min_rows),
        gxe.ExpectColumnValuesToBeBetween(column="feature_count", min_value=features, max_value=features),
        gxe.ExpectColumnValuesToBeBetween(column="nan_count", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="inf_count", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="min_value", min_value=value_range[0]),
        gxe.ExpectColumnValuesToBeBetween(column="max_value", max_value=value_range[1]),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels),
    ):
        samples.add_expectation(e)
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
    """Validate every split; the train split sets the expected shape, labels and (by default) range."""
    import numpy as np

    x_train, y_train = data.split("train")
    features = int(np.prod(x_train.shape[1:]))
    labels = sorted(int(v) for v in np.unique(y_train))
    if config.value_range is not None:
        value_range = config.value_range
    else:
        finite = x_train[np.isfinite(x_train)]
        value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    context = gx_context()
    samples, classes = _suites(config, features, labels, value_range)
    batch_def = context.data_sources.add_pandas("modelpress").add_dataframe_asset("splits") \
        .add_batch_definition_whole_dataframe("split")
    out: list[CheckResult] = []
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        for suite, table in ((samples, sample_table(x, y)), (classes, class_table(y))):
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
