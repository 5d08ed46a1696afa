"""The compression pipeline: registry -> data checks -> [distill] -> [prune] -> [deep_compress] -> [qat] -> ONNX -> quantize
-> evaluate -> gate -> registry."""

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
from modelpress.components.validate_data.component import validate_data

PIPELINE_NAME = "modelpress-compress"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Pull a model from the MLflow registry, optionally distill and prune it, quantize it for a hardware target, "
    "gate it against the source, and register the variant only if every gate passes.",
)
def compress(recipe: str, tracking_uri: str) -> Artifact:
    src = resolve(recipe=recipe, tracking_uri=tracking_uri)
    src.set_caching_options(False)  # an alias may move between scheduled runs
    # Every later step reads the checked copy, so none starts on data that failed its expectations.
    checked = validate_data(recipe=recipe, dataset=src.outputs["dataset"])
    dataset = checked.outputs["validated"]
    # The baseline is always the untouched source; QAT (when on) only changes what gets quantized.
    baseline = export_onnx(source_model=src.outputs["source_model"]).after(checked)
    student = distill(
        recipe=recipe, tracking_uri=tracking_uri, source_model=src.outputs["source_model"],
        dataset=dataset,
    )
    student.set_caching_options(False)  # it logs an MLflow run the variant links to
    pruned = prune(recipe=recipe, source_model=student.outputs["student"], dataset=dataset)
    packed = deep_compress(recipe=recipe, model=pruned.outputs["pruned"], dataset=dataset)
    prep = qat(
        recipe=recipe,
        model=packed.outputs["compressed"],
        baseline=baseline.outputs["onnx_model"],
        dataset=dataset,
    )
    quant = quantize(recipe=recipe, model=prep.outputs["prepared"], dataset=dataset)
    ev = evaluate(
        recipe=recipe,
        candidate=quant.outputs["quantized"],
        source=baseline.outputs["onnx_model"],
        dataset=dataset,
    )
    ev.set_caching_options(False)  # latency is a measurement, never reuse it
    verdict = gate(
        recipe=recipe, tracking_uri=tracking_uri, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        evaluation=ev.outputs["evaluation"],
    )
    verdict.set_caching_options(False)  # a failed verdict logs an MLflow run each time
    with dsl.If(verdict.outputs["Output"] == True, name="gates-passed"):  # noqa: E712
        reg = register(
            recipe=recipe,
            tracking_uri=tracking_uri,
            source=src.outputs["Output"],
            candidate=quant.outputs["quantized"],
            verdict=verdict.outputs["verdict"],
            report=verdict.outputs["report"],
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        reg.set_caching_options(False)
    return verdict.outputs["verdict"]
