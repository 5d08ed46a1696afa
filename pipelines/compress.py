"""The compression pipeline: check the registry; if a target is left, resolve -> data checks -> the
target-independent techniques, once; then per target left (dsl.ParallelFor) [qat] -> quantize -> evaluate ->
gate -> registry; then one summary of every target's verdict and the run's report.

The target-independent steps are the registered techniques that run once (`Technique.per_target`
false), in registry order, each through its own component. The pipeline's parameters are each
component's recipe section (`pipelines/arguments.py`), so the function is built by `build_pipeline`
for the techniques registered when it is called.
"""

from __future__ import annotations

import inspect
from typing import Any

PIPELINE_NAME = "modelpress-compress"
TYPES = {"targets": list, "force": bool}  # and the techniques' own; every other parameter is a JSON string


def _steps(p: dict[str, Any]) -> None:
    from kfp import dsl

    from modelpress.components.check_registered.component import check_registered

    # One task first: pin the source version and drop the targets whose variant exists. When none is
    # left, nothing else runs, so a scheduled run of an unchanged source and recipe is this one task.
    check = check_registered(run=p["run"], variant=p["variant"], targets=p["targets"], tracking_uri=p["tracking_uri"],
                             force=p["force"])
    check.set_caching_options(False)  # the registry changes between runs
    with dsl.If(check.outputs["Output"] == True, name="work-left"):  # noqa: E712
        _build(p, check)


def _build(p: dict[str, Any], check: Any) -> None:
    from kfp import dsl

    from modelpress.components.evaluate.component import evaluate
    from modelpress.components.export_onnx.component import export_onnx
    from modelpress.components.gate.component import gate
    from modelpress.components.register.component import register
    from modelpress.components.resolve.component import resolve
    from modelpress.components.summarize.component import summarize
    from modelpress.components.validate_data.component import validate_data
    from modelpress.core.technique import get_technique, techniques

    source = check.outputs["source"]  # the pinned version, whatever its alias does meanwhile
    src = resolve(config=p["resolve"], tracking_uri=p["tracking_uri"], source=source)
    src.set_caching_options(False)
    # Every later step reads the checked copy, so none starts on data that failed its expectations.
    checked = validate_data(config=p["data_checks"], dataset=src.outputs["dataset"])
    dataset = checked.outputs["validated"]
    # The baseline is always the untouched source; the techniques only change what gets quantized.
    baseline = export_onnx(source_model=src.outputs["source_model"]).after(checked)
    # Target-independent: each runs once, whatever the number of targets.
    model = src.outputs["source_model"]
    for technique in techniques():
        if not technique.per_target:
            model = technique.pipeline_steps(p, model, dataset, source)
    # Per target still to build: its own QAT, quantization, measurement, gates and variant. A target
    # whose gates fail registers nothing and does not stop the others.
    qat, quantize = get_technique("qat").components()[0], get_technique("quantize").components()[0]
    with dsl.ParallelFor(items=check.outputs["todo"], name="targets") as target:
        prep = qat(config=p["quantize"], target=target, model=model, baseline=baseline.outputs["onnx_model"],
                   dataset=dataset)
        quant = quantize(config=p["quantize"], target=target, model=prep.outputs["prepared"], dataset=dataset,
                         baseline=baseline.outputs["onnx_model"], evaluate=p["evaluate"], gates=p["gates"])
        ev = evaluate(config=p["evaluate"], target=target, candidate=quant.outputs["quantized"],
                      source=baseline.outputs["onnx_model"], dataset=dataset)
        ev.set_caching_options(False)  # latency is a measurement, never reuse it
        verdict = gate(gates=p["gates"], model_checks=p["model_checks"], target=target, run=p["run"],
                       tracking_uri=p["tracking_uri"], pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                       evaluation=ev.outputs["evaluation"])
        verdict.set_caching_options(False)  # a failed verdict logs an MLflow run each time
        with dsl.If(verdict.outputs["Output"] == True, name="gates-passed"):  # noqa: E712
            reg = register(config=p["variant"], target=target, run=p["run"], tracking_uri=p["tracking_uri"],
                           source=source, candidate=quant.outputs["quantized"],
                           verdict=verdict.outputs["verdict"], report=verdict.outputs["report"],
                           pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            reg.set_caching_options(False)
    summary = summarize(verdicts=dsl.Collected(verdict.outputs["verdict"]), source=source, run=p["run"],
                        tracking_uri=p["tracking_uri"])
    summary.set_caching_options(False)


def build_pipeline(recipe: Any = None) -> Any:
    """The pipeline for the registered techniques; `recipe` (default: the defaults) gives its parameters' defaults."""
    from kfp import dsl

    from modelpress.core.technique import techniques
    from modelpress.pipelines.arguments import parameter_names, pipeline_arguments
    from modelpress.pipelines.recipe import recipe_model
    from modelpress.pipelines.resources import apply_to_pipeline

    defaults = pipeline_arguments(recipe if recipe is not None else recipe_model()(), tracking_uri="")
    names = parameter_names()
    types = {**TYPES, **{k: v for t in techniques() for k, v in t.pipeline_parameters.items()}}

    resources = (recipe if recipe is not None else recipe_model()()).resources
    targets = tuple(defaults["targets"])

    def compress(*args: Any) -> None:
        _steps(dict(zip(names, args, strict=True)))
        apply_to_pipeline(resources, targets)

    # kfp reads the parameters from the signature and passes them positionally, in this order.
    compress.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           default=inspect.Parameter.empty if n == "tracking_uri" else defaults[n],
                           annotation=types.get(n, str)) for n in names],
    )
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Pull a model from the MLflow registry, optionally distill and prune it once, then for each "
        "hardware target quantize it, gate it against the source, and register that target's variant only if "
        "its gates pass.",
    )(compress)
