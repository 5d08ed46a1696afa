"""The compression pipeline: registry -> data checks -> [distill] -> [prune] -> [deep_compress], once; then per target
(dsl.ParallelFor) [qat] -> quantize -> evaluate -> gate -> registry; then one summary of every target's verdict."""

from kfp import dsl
from kfp.dsl import Artifact

from modelpress.components.deep_compress.component import deep_compress
from modelpress.components.distill.component import distill
from modelpress.components.evaluate.component import evaluate
from modelpress.components.export_onnx.component import export_onnx
from modelpress.components.gate.component import gate
from modelpress.components.prune.component import prune
from modelpress.components.qat.component import qat
from modelpress.components.quantize.component import quantize
from modelpress.components.register.component import register
from modelpress.components.resolve.component import resolve
from modelpress.components.summarize.component import summarize
from modelpress.components.validate_data.component import validate_data

PIPELINE_NAME = "modelpress-compress"
DEFAULT_TARGETS = ["cpu-x86-int8"]  # the default recipe's; a compiled recipe stamps its own


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Pull a model from the MLflow registry, optionally distill and prune it once, then for each hardware "
    "target quantize it, gate it against the source, and register that target's variant only if its gates pass.",
)
def compress(recipe: str, tracking_uri: str, targets: list = DEFAULT_TARGETS) -> Artifact:
    """`targets` is the recipe's list (modelpress compile, submit and run set both from one recipe)."""
    src = resolve(recipe=recipe, tracking_uri=tracking_uri)
    src.set_caching_options(False)  # an alias may move between scheduled runs
    # Every later step reads the checked copy, so none starts on data that failed its expectations.
    checked = validate_data(recipe=recipe, dataset=src.outputs["dataset"])
    dataset = checked.outputs["validated"]
    # The baseline is always the untouched source; QAT (when on) only changes what gets quantized.
    baseline = export_onnx(source_model=src.outputs["source_model"]).after(checked)
    # Target-independent: runs once, whatever the number of targets.
    student = distill(
        recipe=recipe, tracking_uri=tracking_uri, source_model=src.outputs["source_model"],
        dataset=dataset,
    )
    student.set_caching_options(False)  # it logs an MLflow run the variant links to
    pruned = prune(recipe=recipe, source_model=student.outputs["student"], dataset=dataset)
    packed = deep_compress(recipe=recipe, model=pruned.outputs["pruned"], dataset=dataset)
    # Per target: its own QAT, quantization, measurement, gates and variant. A target whose gates
    # fail registers nothing and does not stop the others.
    with dsl.ParallelFor(items=targets, name="targets") as target:
        prep = qat(
            recipe=recipe,
            target=target,
            model=packed.outputs["compressed"],
            baseline=baseline.outputs["onnx_model"],
            dataset=dataset,
        )
        quant = quantize(recipe=recipe, target=target, model=prep.outputs["prepared"], dataset=dataset)
        ev = evaluate(
            recipe=recipe,
            target=target,
            candidate=quant.outputs["quantized"],
            source=baseline.outputs["onnx_model"],
            dataset=dataset,
        )
        ev.set_caching_options(False)  # latency is a measurement, never reuse it
        verdict = gate(
            recipe=recipe, target=target, tracking_uri=tracking_uri, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            evaluation=ev.outputs["evaluation"],
        )
        verdict.set_caching_options(False)  # a failed verdict logs an MLflow run each time
        with dsl.If(verdict.outputs["Output"] == True, name="gates-passed"):  # noqa: E712
            reg = register(
                recipe=recipe,
                target=target,
                tracking_uri=tracking_uri,
                source=src.outputs["source_ref"],
                candidate=quant.outputs["quantized"],
                verdict=verdict.outputs["verdict"],
                report=verdict.outputs["report"],
                pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            reg.set_caching_options(False)
    summary = summarize(verdicts=dsl.Collected(verdict.outputs["verdict"]))
    summary.set_caching_options(False)
    return summary.outputs["summary"]
