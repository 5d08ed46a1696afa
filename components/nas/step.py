"""The NAS steps: workers pull trials from one shared study; one select step reads the study afterwards.

    nas_worker x N (dsl.ParallelFor)  ->  nas_select  ->  distill (trains the chosen architecture in full)

Neither imports kfp. With no `nas:` section the workers' list is empty and select passes the
model through, as every technique step does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from modelpress.components.nas.settings import NasConfig
from modelpress.core.dburl import redact
from modelpress.core.progress import say
from modelpress.errors import ModelpressError


def parse(config_json: str | None) -> NasConfig | None:
    from modelpress.components.technique_step import parse_section
    from modelpress.core.technique import get_technique

    return parse_section(get_technique("nas"), config_json)


def storage_url(config: NasConfig, tracking_uri: str) -> str:
    """`nas.storage`, or an SQLite file beside an embedded MLflow store (the store stays one folder)."""
    if config.storage:
        return config.storage
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).parent / 'nas-studies.db'}"
    raise ModelpressError(
        f"nas.storage is not set, and the tracking URI {tracking_uri} is not a local store the workers share",
        "set nas.storage to a database every worker reaches, e.g. postgresql://user@host:5432/optuna",
    )


def pinned_source(source_path: Path) -> tuple[str, str]:
    """(name, version) of the source check_registered pinned."""
    ref = json.loads(Path(source_path).read_text())
    return ref["name"], ref["version"]


def study_of(config: NasConfig, run_json: str, tracking_uri: str, source_path: Path) -> tuple[str, str]:
    """(storage URL, study name) of this run's search: the workers and select step find the same study."""
    from modelpress.components.nas.search import study_name
    from modelpress.core.run_context import parse_run

    name, version = pinned_source(source_path)
    return storage_url(config, tracking_uri), study_name(f"models:/{name}/{version}", parse_run(run_json).config_hash)


def trial_context(config: NasConfig, model_in: Path, dataset: Path, targets: list[str], evaluate_json: str,
                  quantize_json: str, gates_json: str) -> Any:
    """Everything a trial needs, built once per worker."""
    import torch

    from modelpress.components.distill.teacher import Teacher
    from modelpress.components.evaluate.measure import EvaluateConfig
    from modelpress.components.gate.step import GateConfig
    from modelpress.components.nas import search
    from modelpress.core.config import parse_config
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target
    from modelpress.core.technique import get_technique
    from modelpress.validators.gates import recipe_gates

    torch.set_num_threads(1)  # workers share the machine: one core each
    teacher = Teacher(Path(model_in))
    data = DatasetSplits.load(dataset)
    shape = tuple(teacher.manifest.input.shape)
    search.check_fits(config, shape)
    target = parse_target(config.target or targets[0])
    batch = config.batch_size or max(parse_config(EvaluateConfig, evaluate_json, "evaluate").batch_sizes)
    teacher_val = float((teacher(torch.from_numpy(data.x_val)).argmax(1).numpy() == data.y_val).mean())
    # Only accuracy gates become trial constraints (`search.gate_constraints`): no latency guard here.
    gates = recipe_gates(GateConfig.from_sections(gates_json, "{}").gates, data.info.get("task", "classification"),
                         target.name)
    return search.TrialContext(
        teacher=teacher, data=data, config=config, target=target, batch_size=batch,
        quantize=get_technique("quantize").parse_config(json.loads(quantize_json)),
        constraints=(*config.constraints, *search.gate_constraints(gates, teacher_val, config.gate_slack)),
        input_shape=shape, num_classes=search.num_classes_of(teacher, shape),
    )


def worker_step(config_json: str, worker: int, run_json: str, tracking_uri: str, source_path: Path, targets: list[str],
                evaluate_json: str, quantize_json: str, gates_json: str, model_in: Path, dataset: Path) -> int:
    """Run trials until the study has its budget; returns how many this worker's study holds complete."""
    from modelpress.components.nas import search

    config = parse(config_json)
    if config is None:
        return 0
    url, study_name = study_of(config, run_json, tracking_uri, source_path)
    storage = search.open_storage(url, config)
    ctx = trial_context(config, model_in, dataset, targets, evaluate_json, quantize_json, gates_json)
    study = search.open_study(storage, study_name, config, worker)
    say(f"nas: worker {worker} on study {study_name} at {redact(url)} ({config.sampler}, budget "
        f"{config.trials} trials, latency on {ctx.target.provider} at batch {ctx.batch_size})")
    with search.with_reference(study, ctx) as timed:
        return search.run_worker(study, timed, worker).get("COMPLETE", 0)


def select_step(config_json: str, run_json: str, tracking_uri: str, source_path: Path, model_in: Path,
                dataset: Path, model_out: Path, report_out: Path) -> dict[str, float]:
    """The chosen architecture in the notes of the (unchanged) teacher; the search logged to MLflow."""
    import optuna

    from modelpress.components.nas import front, search
    from modelpress.components.technique_step import apply_technique, record
    from modelpress.core.technique import Result
    from modelpress.registry.store import connect, ensure_experiment

    config = parse(config_json)
    if config is None:
        apply_technique("nas", None, model_in, dataset, model_out)
        Path(report_out).write_text("<!doctype html><p>No architecture search in this run.</p>")
        return {}
    url, study_name = study_of(config, run_json, tracking_uri, source_path)
    study = optuna.load_study(study_name=study_name, storage=search.open_storage(url, config))
    n = search.counts(study)
    if n.get("COMPLETE", 0) < config.trials:
        raise ModelpressError(
            f"nas: study {study_name} holds {n.get('COMPLETE', 0)} of {config.trials} completed trials (its workers "
            "stopped early)", "run the pipeline again: the study resumes where it stopped")
    pts = front.points(study)
    chosen = front.choose(pts, config.select)
    result = front.summary(study, study_name, config, pts, chosen, redact(url))
    html = front.report_html(pts, chosen, f"NAS study {study_name}")
    client = connect(tracking_uri)
    failed = [{"number": t.number, "state": t.state.name, "error": t.user_attrs.get("error", "worker stopped")}
              for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))]
    parent = front.log_trials(client, ensure_experiment(client, tracking_uri), pts, failed, chosen,
                              {**result.notes, "metrics": result.metrics}, html, Path(report_out).parent / "nas")
    Path(report_out).write_text(html)
    shutil.copytree(model_in, model_out, dirs_exist_ok=True)
    result = Result(model_dir=Path(model_out), metrics=result.metrics, notes={**result.notes, "mlflow_run_id": parent})
    say(f"nas: search logged to MLflow as run {parent} ({len(pts)} child runs)")
    return record("nas", model_in, model_out, result)
