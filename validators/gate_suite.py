"""The metrics table validated against the gate suite, with Great Expectations.

The gates become an expectation suite over a one-row table of the candidate's metrics plus,
for change thresholds, how much worse than the source it got (absolute and relative, already
signed by the gate's direction). GX then checks that every gated metric exists, is a number,
and lies within its bounds. The gate step requires both this and `gates.check` to pass, so
the typed checker (which words the reasons) and GX can only agree or make the verdict stricter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpress.validators.gates import EPS, Gate, metric_value, worse_than_source


@dataclass(frozen=True)
class SuiteResult:
    gate: int  # index of the gate it came from
    expectation: str
    column: str
    passed: bool


def _worse(gate: Gate, measured: float | None, base: float | None) -> tuple[float | None, float | None]:
    if measured is None or base is None:
        return None, None
    worse = worse_than_source(gate, measured, base)
    return worse, (worse / abs(base) if base else None)


def table_and_suite(context: Any, gates: tuple[Gate, ...], candidate: Mapping[str, Any], baseline: Mapping[str, Any]):
    """The one-row metrics table and the suite built from the gates (GX imported here).

    The suite is added to `context` so each expectation gets an id its result can be traced by.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd

    row: dict[str, float | None] = {k: v for k in candidate if (v := metric_value(candidate, k)) is not None}
    suite = context.suites.add(gx.ExpectationSuite(name="gates"))
    owners: list[int] = []
    index = {id(g): i for i, g in enumerate(gates)}

    def expect(gate: Gate, e: Any) -> None:
        suite.add_expectation(e)
        owners.append(index[id(gate)])

    def between(gate: Gate, column: str, lo: float | None, hi: float | None) -> None:
        expect(gate, gxe.ExpectColumnValuesToNotBeNull(column=column))
        expect(gate, gxe.ExpectColumnValuesToBeBetween(
            column=column,
            min_value=None if lo is None else lo - EPS * max(1.0, abs(lo)),
            max_value=None if hi is None else hi + EPS * max(1.0, abs(hi)),
        ))

    for gate in gates:
        expect(gate, gxe.ExpectColumnToExist(column=gate.metric))
        if gate.value is not None:
            between(gate, gate.metric, gate.value.lower, gate.value.upper)
        if gate.change is not None:
            worse, rel = _worse(gate, metric_value(candidate, gate.metric), metric_value(baseline, gate.metric))
            if gate.change.max_degradation is not None:
                row[f"{gate.metric}:worse_by"] = worse
                between(gate, f"{gate.metric}:worse_by", None, gate.change.max_degradation)
            if gate.change.max_relative_degradation is not None:
                row[f"{gate.metric}:worse_by_relative"] = rel
                between(gate, f"{gate.metric}:worse_by_relative", None, gate.change.max_relative_degradation)
    table = pd.DataFrame([{k: (float("nan") if v is None else v) for k, v in row.items()}])
    return table, suite, owners


def validate_metrics(gates: tuple[Gate, ...], candidate: Mapping[str, Any],
                     baseline: Mapping[str, Any]) -> tuple[SuiteResult, ...]:
    from modelpress.validators.data_checks import gx_context

    context = gx_context()
    table, suite, owners = table_and_suite(context, gates, candidate, baseline)
    batch = context.data_sources.add_pandas("metrics").add_dataframe_asset("metrics") \
        .add_batch_definition_whole_dataframe("row").get_batch(batch_parameters={"dataframe": table})
    result = batch.validate(suite)
    # GX may reorder results; match them back to their expectations by id.
    by_id = {e.id: owner for e, owner in zip(suite.expectations, owners)}
    return tuple(SuiteResult(by_id[r.expectation_config.id], r.expectation_config.type,
                             r.expectation_config.kwargs.get("column", ""), bool(r.success))
                 for r in result.results)


def combine(results: tuple[Any, ...], suite: tuple[SuiteResult, ...]) -> tuple[Any, ...]:
    """Each gate's result, failed as well when GX found one of its expectations unmet."""
    import dataclasses

    out = []
    for i, r in enumerate(results):
        unmet = [f"{s.expectation}({s.column})" for s in suite if s.gate == i and not s.passed]
        if r.passed and unmet:
            r = dataclasses.replace(r, passed=False,
                                    reason=f"{r.metric}: Great Expectations found {', '.join(unmet)} unmet")
        out.append(r)
    return tuple(out)


def render_markdown(suite: tuple[SuiteResult, ...]) -> str:
    unmet = [s for s in suite if not s.passed]
    head = f"The metrics table was validated against the gate suite by Great Expectations: {len(suite)} expectations"
    lines = ["", "## Metrics table (Great Expectations)", "",
             head + (", all met." if not unmet else f", {len(unmet)} unmet:")]
    lines += [f"- {s.expectation} on `{s.column}`" for s in unmet]
    return "\n".join(lines) + "\n"
