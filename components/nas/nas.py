"""The nas technique: search an architecture for the student that the distill step then trains in full.

In a pipeline it is several tasks (workers in a dsl.ParallelFor sharing one Optuna study, then
a select step: `pipeline_steps`). `apply()` runs the same search in one process on an
in-memory study, for library use and tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.components.nas.settings import METRICS, NasConfig
from modelpress.core.technique import Result, Technique
from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import HardwareTarget


class Nas(Technique):
    """Neural architecture search: multi-objective (accuracy, latency on the target, parameters) over a declared space."""

    name = "nas"
    Config = NasConfig
    description = "Architecture search for the distill step's student; None: no search."
    input_format = "any"  # the teacher may be a torch or an ONNX model; it passes through unchanged
    changes_weights = False  # it picks an architecture; distill trains it
    section = "nas"
    component = "modelpress.components.nas.component:nas_select"
    extra_components = ("modelpress.components.nas.component:nas_worker",)
    cacheable = False  # the study lives outside the pipeline's artifacts
    source_role = "teacher"
    METRICS = METRICS
    pipeline_parameters = {"nas_workers": list}

    def needs_labels(self, config: NasConfig) -> bool:  # type: ignore[override]
        return True

    def training_tasks(self) -> tuple[str, ...]:
        return ("nas-worker",)  # each worker trains its trials' students

    def parameter_values(self, config: NasConfig | None) -> dict[str, Any]:  # type: ignore[override]
        return {"nas_workers": list(range(config.workers)) if config is not None else []}

    def check_recipe(self, config: NasConfig, recipe: Any) -> None:  # type: ignore[override]
        student = recipe.distill.student if recipe.distill is not None else None
        if student is None or not student.nas:
            raise ModelpressError("nas chooses an architecture for the distill step to train, and the recipe's "
                                  "distill student is not it: set `distill: {student: {nas: true}}`")
        if config.target is not None and config.target not in recipe.targets:
            raise ModelpressError(f"nas.target {config.target} is not one of the recipe's targets "
                                  f"({', '.join(recipe.targets)}): pick one of them, or drop nas.target")
        if config.storage is not None and not config.storage.startswith(
                ("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://")):
            raise ModelpressError(f"nas.storage {config.storage.split('://')[0]}://...: not a database URL; use "
                                  "postgresql://user@host:port/db or sqlite:///path")

    def preflight(self, config: NasConfig, tracking_uri: str) -> None:  # type: ignore[override]
        from modelpress.components.nas.search import open_storage
        from modelpress.components.nas.step import storage_url

        open_storage(storage_url(config, tracking_uri), config)  # the workers' study storage answers

    def variant_tags(self, note: dict[str, Any]) -> dict[str, str]:  # type: ignore[override]
        return {"modelpress.nas.trial": str(note["trial"]), "modelpress.nas.study": note["study"],
                "modelpress.nas.sampler": note["sampler"], "modelpress.nas.rule": note["rule"],
                "modelpress.nas.storage": note["storage"],
                **({"modelpress.nas.run": note["mlflow_run_id"]} if note.get("mlflow_run_id") else {})}

    def report_section(self, note: dict[str, Any]) -> str | None:  # type: ignore[override]
        from modelpress.components.nas.front import from_note, section_html

        pts, chosen = from_note(note)
        run = f" (every trial: MLflow run {note['mlflow_run_id']})" if note.get("mlflow_run_id") else ""
        return section_html(pts, chosen, f"Architecture search: the feasible Pareto front of study {note['study']}, "
                                         f"trial {chosen.number} chosen by '{note['rule']}'{run}")

    def describe(self, result: Result) -> list[str]:
        m, n = result.metrics, result.notes
        return [f"nas: {int(m['trials_complete'])} trials ({int(m['trials_feasible'])} feasible, "
                f"{int(m['front_size'])} on the front); chose trial {n['trial']} by '{n['rule']}': "
                f"val acc {m['chosen_accuracy']:.4f}, {m['chosen_latency_ms']:.3f} ms, {int(m['chosen_params'])} params"]

    def pipeline_steps(self, p: dict[str, Any], model: Any, dataset: Any, source: Any) -> Any:
        """Workers fanned out with dsl.ParallelFor over `nas_workers`, then one select step after all of them."""
        from kfp import dsl

        from modelpress.components.nas.component import nas_select, nas_worker

        common = {"config": p["nas"], "run": p["run"], "tracking_uri": p["tracking_uri"], "source": source,
                  "model": model, "dataset": dataset}
        with dsl.ParallelFor(items=p["nas_workers"], name="nas-workers") as worker:
            # Workers also measure as the target runs the model, and take the accuracy gates as constraints.
            work = nas_worker(worker=worker, targets=p["targets"], evaluate=p["evaluate"], quantize=p["quantize"],
                              gates=p["gates"], **common)
            work.set_caching_options(False)  # the study is the state; a cached worker would do nothing
        select = nas_select(**common).after(work)
        select.set_caching_options(False)
        return select.outputs["out_model"]

    def apply(
        self,
        model_dir: Path,
        data: DatasetSplits | None,
        config: NasConfig,  # type: ignore[override]
        target: HardwareTarget | None,
        out_dir: Path,
        quantize: Any = None,
        batch_size: int = 64,
        extra_constraints: tuple = (),
    ) -> Result:
        """The whole search in this process, on an in-memory study (one worker). `quantize`: the quantize
        section a quantizing target applies (default: its defaults); `extra_constraints`: besides the config's."""
        import optuna

        from modelpress.components.distill.teacher import Teacher
        from modelpress.components.nas import front, search
        from modelpress.core.hardware import parse_target
        from modelpress.core.technique import get_technique

        if data is None:
            raise ModelpressError("nas needs training and validation data, and has none")
        teacher = Teacher(Path(model_dir))
        shape = tuple(teacher.manifest.input.shape)
        search.check_fits(config, shape)
        tgt = target or parse_target(config.target or "cpu-x86-fp32")
        ctx = search.TrialContext(
            teacher=teacher, data=data, config=config, target=tgt, batch_size=config.batch_size or batch_size,
            quantize=quantize or get_technique("quantize").Config(), constraints=(*config.constraints, *extra_constraints),
            input_shape=shape, num_classes=search.num_classes_of(teacher, shape))
        study = search.open_study(optuna.storages.InMemoryStorage(), "in-process", config)
        with search.with_reference(study, ctx) as timed:
            search.run_worker(study, timed)
        pts = front.points(study)
        chosen = front.choose(pts, config.select)
        result = front.summary(study, "in-process", config, pts, chosen, "memory")
        shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
        return Result(model_dir=out_dir, metrics=result.metrics, notes=result.notes)
