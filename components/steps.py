"""What each pipeline step does, as plain functions of paths and strings.

The KFP components call these; tests can call them without kfp. No kfp import here, and heavy imports stay inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from modelpress.core.artifacts import NOTES_FILE
from modelpress.core.progress import for_target
from modelpress.core.progress import say as _say


def _recipe(recipe_json: str):
    from modelpress.core.config import parse_config
    from modelpress.pipelines.recipe import Recipe

    return parse_config(Recipe, recipe_json, "recipe")


def _target_recipe(recipe_json: str, target: str):
    """The recipe as one target's task sees it; that task's progress lines name the target too
    (the targets' tasks run side by side, so their lines interleave)."""
    for_target(target)
    return _recipe(recipe_json).for_target(target)


def resolve_step(recipe_json: str, tracking_uri: str, model_out: Path, dataset_out: Path) -> dict:
    """Resolve the source URI, fetch the model, and bind the run's data to its inputs (all preflight)."""
    from modelpress.components.resolve.run_data import prepare_data
    from modelpress.registry import source as src
    from modelpress.registry.store import connect

    recipe = _recipe(recipe_json)
    client = connect(tracking_uri)
    ref = src.resolve(client, recipe.source)
    _say(f"resolved {recipe.source} -> {ref.version_uri}")
    manifest = src.fetch(ref, Path(model_out), trust_pickle=recipe.trust_pickled_source)
    _refuse_torch_steps_on_onnx(recipe, manifest)
    _say(f"model: {', '.join(i.describe() for i in manifest.inputs)} -> "
         f"{', '.join(o.describe() for o in manifest.outputs)}")
    data = prepare_data(recipe, manifest, Path(model_out), ref.tags, ref.run_id, client)
    data.save(dataset_out)
    info = data.info
    rows = info["data"]["rows"]
    split = info["data"].get("split", {})
    _say(f"data: {data.name}: {rows['train']} train, {rows['val']} val, {rows['test']} test rows "
         f"(split: {split.get('method', '?')}{', seed ' + str(split['seed']) if 'seed' in split else ''}); "
         f"labels: {info['data']['label'] or 'none'}")
    for name, note in info["data"]["inputs"].items():
        _say(f"  input {name}: {note}")
    _say(f"task: {info['task']} ({info['task_reason']}); scored output: {info['output']}"
         + (f"; pooling: {info['pooling']}" if "pooling" in info else ""))
    return asdict(ref)


def _refuse_torch_steps_on_onnx(recipe: Any, manifest: Any) -> None:
    """Steps that train torch weights need a torch model: the source, or a distilled student."""
    from modelpress.errors import ModelpressError

    steps = [s for s in recipe.torch_sections() if s != "distill"]
    if steps and not manifest.is_torch and recipe.distill is None:
        raise ModelpressError(
            f"{', '.join(steps)} train torch weights, but {recipe.source} is {manifest.format}",
            "register the torch model itself (mlflow.pytorch.log_model), add a distill section (its student "
            "is a torch model), or drop those sections; quantize works on ONNX as it is",
        )


def validate_data_step(recipe_json: str, dataset_in: Path, dataset_out: Path, report_out: Path) -> bool:
    """Great Expectations checks on every split; the dataset goes on only if they pass.

    The report is written either way; a failure raises, naming each unmet expectation.
    """
    import shutil

    from modelpress.core.data import DatasetSplits
    from modelpress.errors import ModelpressError
    from modelpress.validators.data_checks import check_dataset, render_markdown

    recipe = _recipe(recipe_json)
    data = DatasetSplits.load(dataset_in)
    if not recipe.data_checks.enabled:
        Path(report_out).write_text(f"# Data checks: {data.name}\n\nSkipped: data_checks.enabled is false.\n")
        shutil.copyfile(dataset_in, dataset_out)
        _say("data checks: off (data_checks.enabled is false)")
        return False
    report = check_dataset(data, recipe.data_checks)
    Path(report_out).write_text(render_markdown(report))
    if not report.passed:
        raise ModelpressError(f"data checks failed on {data.name}: {report.reason()}",
                              "fix the dataset, or relax the recipe's data_checks section")
    shutil.copyfile(dataset_in, dataset_out)
    _say(f"data checks: {len(report.results)} expectations met on {data.name} (train, val, test)")
    return True


def export_step(model_in: Path, model_out: Path) -> None:
    from modelpress.components.export_onnx.onnx_export import export_onnx

    export_onnx(Path(model_in), Path(model_out))
    _write_notes(Path(model_out), _read_notes(Path(model_in)))  # the source's notes (how it was loaded)
    _say(f"exported ONNX to {model_out}")


def _read_notes(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / NOTES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_notes(model_dir: Path, notes: dict[str, Any]) -> None:
    """Notes travel inside the model folder, step to step, up to the register step."""
    if notes:
        (Path(model_dir) / NOTES_FILE).write_text(json.dumps(notes, indent=2))


def _torch_step(name: str, config: Any, recipe: Any, model_in: Path, dataset: Path, model_out: Path) -> Any:
    """Apply technique `name` to a torch model folder; without its recipe section, pass the folder through."""
    import shutil

    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    if config is None:
        shutil.copytree(model_in, model_out, dirs_exist_ok=True)
        _say(f"{name}: off (no {name} section in the recipe); the model passes through")
        return None
    return get_technique(name).apply(
        # Target-independent: it runs once for every target (their settings only matter from QAT on).
        Path(model_in), DatasetSplits.load(dataset), config, parse_target(recipe.targets[0]), Path(model_out)
    )


def _carry_compressed_file(model_in: Path, model_out: Path) -> None:
    """A deep-compressed model's file travels beside its decoded ONNX export, up to registration."""
    import shutil

    from modelpress.components.deep_compress.files import COMPRESSED_FILE

    if (model_in / COMPRESSED_FILE).is_file():
        shutil.copyfile(model_in / COMPRESSED_FILE, model_out / COMPRESSED_FILE)


def distill_step(
    recipe_json: str, tracking_uri: str, source_in: Path, dataset: Path, model_out: Path
) -> dict[str, float]:
    """The student trained on the source (the teacher), or the source itself when distill is off."""
    recipe = _recipe(recipe_json)
    if recipe.distill is not None and recipe.distill.student.model is not None:
        result = _distill_into_registered(recipe, tracking_uri, source_in, dataset, model_out)
    else:
        result = _torch_step("distill", recipe.distill, recipe, source_in, dataset, model_out)
    if result is None:
        return {}
    history = result.notes.pop("history")
    run_id = log_training_run(tracking_uri, recipe, "distill", result.metrics, history)
    _write_notes(Path(model_out), {**_read_notes(Path(source_in)),
                                   "distill": {**result.notes, "metrics": result.metrics, "training_run_id": run_id}})
    m = result.metrics
    _say(f"distill: student {int(m['student_params'])} params ({m['params_ratio']:.2f}x of the teacher), "
         f"val accuracy {m['val_accuracy']:.4f} (teacher {m['teacher_val_accuracy']:.4f}); MLflow run {run_id}")
    return m


def _distill_into_registered(recipe: Any, tracking_uri: str, source_in: Path, dataset: Path, model_out: Path) -> Any:
    """Fetch `distill.student.model` from the registry (as the source is fetched), then distill into it."""
    import tempfile

    from modelpress.components.distill.distill import Distill
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.registry import source as src
    from modelpress.registry.store import connect

    uri = recipe.distill.student.model
    ref = src.resolve(connect(tracking_uri), uri)
    _say(f"student: {uri} -> {ref.version_uri}")
    with tempfile.TemporaryDirectory(prefix="modelpress-student-") as tmp:
        src.fetch(ref, Path(tmp), trust_pickle=recipe.trust_pickled_source)
        result = Distill().apply(Path(source_in), DatasetSplits.load(dataset), recipe.distill,
                                 parse_target(recipe.targets[0]), Path(model_out), student_dir=Path(tmp))
    result.notes["student"] = {"model": uri, "version": ref.version_uri}
    return result


def log_training_run(
    tracking_uri: str, recipe: Any, technique: str, metrics: dict[str, float], history: list[dict[str, float]]
) -> str:
    """One MLflow run per training: the technique's config as params, per-epoch metrics, the result."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    from modelpress.registry import tags as T
    from modelpress.registry.store import connect, ensure_experiment

    client = connect(tracking_uri)
    run = client.create_run(
        ensure_experiment(client, tracking_uri),
        run_name=f"{technique} {recipe.source} for {', '.join(recipe.targets)}",
        tags={T.KIND: "training", T.PREFIX + "technique": technique, T.PREFIX + "source.uri": recipe.source},
    )
    now = int(time.time() * 1000)
    section = getattr(recipe, technique).model_dump(mode="json")
    params = [Param(k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)[:6000])
              for k, v in sorted(section.items())]
    series = [Metric(k, float(v), now, int(row["epoch"])) for row in history for k, v in row.items() if k != "epoch"]
    # A final value under a per-epoch name would read as epoch 0; rename it.
    per_epoch = {k for row in history for k in row}
    final = [Metric(f"best_{k}" if k in per_epoch else k, float(v), now, 0) for k, v in metrics.items()]
    _log_in_batches(client, run.info.run_id, series + final, params, [RunTag(T.CONFIG_HASH, recipe.config_hash())])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _log_in_batches(client: Any, run_id: str, metrics: list, params: list, tags: list) -> None:
    """log_batch takes at most 1000 metrics per call; params and tags go with the first."""
    for start in range(0, max(1, len(metrics)), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900],
                         params=params if start == 0 else [], tags=tags if start == 0 else [])


def prune_step(recipe_json: str, model_in: Path, dataset: Path, model_out: Path) -> dict[str, float]:
    """The torch model later steps start from: pruned and fine-tuned, or the input itself."""
    recipe = _recipe(recipe_json)
    result = _torch_step("prune", recipe.prune, recipe, model_in, dataset, model_out)
    if result is None:
        return {}
    m = result.metrics
    # Keep what earlier steps noted (a distilled student's training run, say).
    _write_notes(Path(model_out), {**_read_notes(Path(model_in)), "prune": {**result.notes, "metrics": m}})
    if "heads" in m:
        _say(f"prune: heads {int(m['heads_before'])} -> {int(m['heads'])}, params {m['params_ratio']:.2f}x, "
             f"file {m['file_ratio']:.2f}x; val cosine to the unpruned {m['val_cosine']:.4f}")
        return m
    _say(
        f"prune: params {m['params_ratio']:.2f}x, nonzero {m['nonzero_ratio']:.2f}x, MACs {m['macs_ratio']:.2f}x, "
        f"file {m['file_ratio']:.2f}x; val accuracy {m['val_accuracy_before']:.4f} -> {m['val_accuracy']:.4f}"
    )
    return m


def deep_compress_step(recipe_json: str, model_in: Path, dataset: Path, model_out: Path) -> dict[str, float]:
    """The deep-compressed model (its file plus the decoded weights), or the input itself."""
    recipe = _recipe(recipe_json)
    result = _torch_step("deep_compress", recipe.deep_compress, recipe, model_in, dataset, model_out)
    if result is None:
        return {}
    _write_notes(Path(model_out), {**_read_notes(Path(model_in)),
                                   "deep_compress": {**result.notes, "metrics": result.metrics}})
    for row in result.notes["stages"]:
        _say(f"deep_compress: {row['stage']}: {row['bytes']:,} B ({row['ratio']:.1f}x), "
             f"test accuracy {row['test_accuracy']:.4f}")
    return result.metrics


def qat_step(
    recipe_json: str, target: str, model_in: Path, baseline_onnx: Path, dataset: Path, onnx_out: Path
) -> dict[str, float]:
    """The ONNX model to quantize: the baseline itself, or an export of the pruned and/or QAT-tuned model."""
    import shutil
    import tempfile

    from modelpress.components.export_onnx.onnx_export import export_onnx
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    recipe = _target_recipe(recipe_json, target)
    if recipe.quantize.qat is None and not recipe.changes_weights():
        # No second export: the untouched source's ONNX is what gets quantized.
        shutil.copytree(baseline_onnx, onnx_out, dirs_exist_ok=True)
        _say("qat: off (no quantize.qat in the recipe); the source's ONNX passes through")
        return {}
    notes = _read_notes(Path(model_in))
    if recipe.quantize.qat is None:
        export_onnx(Path(model_in), Path(onnx_out))
        _write_notes(Path(onnx_out), notes)
        _carry_compressed_file(Path(model_in), Path(onnx_out))
        _say("qat: off; exported the distilled/pruned model to ONNX")
        return {}
    with tempfile.TemporaryDirectory(prefix="modelpress-qat-") as tmp:
        result = get_technique("qat").apply(
            Path(model_in), DatasetSplits.load(dataset), recipe.quantize,
            parse_target(recipe.target), Path(tmp) / "tuned",
        )
        export_onnx(result.model_dir, Path(onnx_out))
    _write_notes(Path(onnx_out), {**notes, "qat": result.notes})
    _say("qat: exported the fine-tuned model to ONNX")
    return result.metrics


def quantize_step(
    recipe_json: str, target: str, model_in: Path, dataset: Path | None, model_out: Path
) -> dict[str, float]:
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique

    recipe = _target_recipe(recipe_json, target)
    if not recipe.quantizes():
        import shutil

        shutil.copytree(model_in, model_out, dirs_exist_ok=True)
        _say(f"quantize: none for the fp32 target {recipe.target}; the model passes through")
        return {}
    technique = get_technique("quantize")
    data = DatasetSplits.load(dataset) if dataset else None
    result = technique.apply(
        Path(model_in), data, recipe.quantize, parse_target(recipe.target), Path(model_out)
    )
    _write_notes(Path(model_out), {**_read_notes(Path(model_in)), "quantize": result.notes})
    notes = result.notes
    _say(f"quantize: mode {notes['settings']['mode']}, size {result.metrics['size_ratio']:.2f}x of source")
    if "quantized_by_op" in notes:
        _say(f"quantized: {notes['quantized_by_op']}; stayed float: {len(notes['stayed_float'])}")
        for node, why in list(notes["stayed_float"].items())[:10]:
            _say(f"  float: {node}: {why}")
    elif "fp16_initializers" in notes:
        _say(f"fp16 initializers: {notes['fp16_initializers']}, fp32 left: {notes['fp32_initializers']}")
    return result.metrics


def evaluate_step(
    recipe_json: str, target: str, candidate: Path, source: Path, dataset: Path, out_json: Path
) -> dict[str, Any]:
    from modelpress.components.evaluate.measure import evaluate
    from modelpress.core import artifacts
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.validators.model_checks import onnx_checker

    recipe = _target_recipe(recipe_json, target)
    data = DatasetSplits.load(dataset)
    evaluation = evaluate(
        Path(candidate), Path(source), data, parse_target(recipe.target), recipe.evaluate, progress=_say,
    ).to_dict()
    # What was scored and on what data: the gate picks the task's gates, the variant records it.
    evaluation["task"] = data.info.get("task", "classification")
    evaluation["data"] = {k: data.info[k] for k in ("data", "task_reason", "output", "output_reason", "pooling")
                          if k in data.info}
    evaluation["checks"] = {"onnx_checker": onnx_checker(artifacts.onnx_file(Path(candidate)))}
    # What earlier techniques measured (params, MACs, the compressed file) is gateable too.
    evaluation["technique"] = {
        f"{name}_{k}": v
        for name, note in _read_notes(Path(candidate)).items()
        if isinstance(note, dict)
        for k, v in note.get("metrics", {}).items()
    }
    Path(out_json).write_text(json.dumps(evaluation, indent=2))
    return evaluation


def gate_inputs(evaluation: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Candidate metrics (its own, the comparisons, the techniques') and the source's, for the gates."""
    candidate = {**evaluation["candidate"], **evaluation["comparison"], **evaluation.get("technique", {})}
    return candidate, dict(evaluation["source"])


def gate_step(
    recipe_json: str,
    target: str,
    evaluation_json: Path,
    verdict_out: Path,
    report_out: Path,
    tracking_uri: str | None = None,
    pipeline_run_id: str | None = None,
) -> bool:
    from modelpress.validators import gate_suite
    from modelpress.validators.gates import Verdict, check_all, render_markdown
    from modelpress.validators.model_checks import check_model

    recipe = _target_recipe(recipe_json, target)
    evaluation = json.loads(Path(evaluation_json).read_text())
    candidate, baseline = gate_inputs(evaluation)
    gates = recipe.active_gates(evaluation.get("task", "classification"))
    suite = gate_suite.validate_metrics(gates, candidate, baseline)
    results = gate_suite.combine(check_all(gates, candidate, baseline).results, suite)
    results += check_model(evaluation, recipe.model_checks)
    verdict = Verdict(passed=all(r.passed for r in results), results=results)
    body = {**verdict.to_dict(), "target": recipe.target, "evaluation": evaluation}
    report = render_markdown(verdict, f"Gates for {recipe.source} on {recipe.target}") + gate_suite.render_markdown(suite)
    Path(report_out).write_text(report)
    if not verdict.passed and tracking_uri:
        body["mlflow_run_id"] = log_failed_verdict(tracking_uri, recipe, body, report, pipeline_run_id)
        _say(f"failed verdict logged to MLflow run {body['mlflow_run_id']} (report attached)")
    Path(verdict_out).write_text(json.dumps(body, indent=2))
    _say(f"verdict: {'PASSED' if verdict.passed else 'FAILED'} ({verdict.reason})")
    return verdict.passed


def log_failed_verdict(
    tracking_uri: str, recipe: Any, verdict: dict[str, Any], report: str, pipeline_run_id: str | None
) -> str:
    """A tracking run (not a registry entry) so a refused candidate's reasons can be read back from MLflow."""
    import time

    from mlflow.entities import Metric, RunTag

    from modelpress.registry import tags as T
    from modelpress.registry.store import connect, ensure_experiment

    client = connect(tracking_uri)
    run = client.create_run(
        ensure_experiment(client, tracking_uri),
        run_name=f"verdict FAILED {recipe.source} for {recipe.target}",
        tags={T.KIND: "verdict", T.VERDICT: "failed", T.TARGET: recipe.target, T.PREFIX + "source.uri": recipe.source,
              T.CONFIG_HASH: recipe.config_hash(), T.CHAIN: ">".join(recipe.chain()),
              **({T.PIPELINE_RUN: pipeline_run_id} if pipeline_run_id else {})},
    )
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in sorted(flat_metrics(verdict["evaluation"]).items())]
    _log_in_batches(client, run.info.run_id, metrics, [], [RunTag(T.PREFIX + "reason", verdict["reason"][:4000])])
    client.log_text(run.info.run_id, report, "gate_report.md")
    client.log_dict(run.info.run_id, {k: verdict[k] for k in ("passed", "reason", "results")}, "verdict.json")
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def flat_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    return {
        **evaluation["candidate"],
        **{f"source_{k}": v for k, v in evaluation["source"].items()},
        **evaluation["comparison"],
        **evaluation.get("technique", {}),
    }


def register_step(
    recipe_json: str,
    target: str,
    tracking_uri: str,
    source_ref: Path,
    candidate: Path,
    verdict_json: Path,
    report_md: Path | None,
    pipeline_run_id: str,
) -> str:
    from modelpress.core.hardware import parse_target
    from modelpress.registry.source import SourceRef
    from modelpress.registry.store import connect
    from modelpress.registry.variants import register_variant

    recipe = _target_recipe(recipe_json, target)
    verdict = json.loads(Path(verdict_json).read_text())
    notes = _read_notes(Path(candidate))
    # Which provider measured what (and what could not be measured here) travels with the variant.
    notes["evaluation_environment"] = verdict["evaluation"]["environment"]
    if "data" in verdict["evaluation"]:  # where the data came from, how it was split, what was scored
        notes["data"] = {"task": verdict["evaluation"]["task"], **verdict["evaluation"]["data"]}
    attachments = {"gate_report.md": Path(report_md).read_text()} if report_md else {}
    training_run = notes.get("distill", {}).get("training_run_id")
    ref = register_variant(
        connect(tracking_uri),
        source=SourceRef(**json.loads(Path(source_ref).read_text())),
        model_dir=Path(candidate),
        target=parse_target(recipe.target),
        chain=recipe.chain(),
        config_hash=recipe.config_hash(),
        metrics=flat_metrics(verdict["evaluation"]),
        verdict={k: verdict[k] for k in ("passed", "reason", "results")},
        pipeline_run_id=pipeline_run_id,
        alias=recipe.variant.alias,
        notes=notes,
        attachments=attachments,
        training_run_id=training_run,
    )
    _say(f"{'registered' if ref.created else 'already registered'} {ref.uri} @{ref.alias}")
    return ref.uri


def summarize_step(verdict_paths: list[str], summary_out: Path) -> list[dict[str, Any]]:
    """Every target's verdict in one list (target order); each keeps the path of its verdict file."""
    rows = [{**json.loads(Path(p).read_text()), "verdict_path": str(p)} for p in verdict_paths]
    rows.sort(key=lambda r: r["target"])
    Path(summary_out).write_text(json.dumps(rows, indent=2))
    passed = [r["target"] for r in rows if r["passed"]]
    _say(f"summary: {len(passed)} of {len(rows)} targets passed their gates"
         + (f" ({', '.join(passed)})" if passed else ""))
    return rows
