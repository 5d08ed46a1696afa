"""CPU and memory requests and limits for the pipeline's tasks: the recipe's `resources:` section.

    resources:
      default: {cpu: 500m, memory: 1Gi, memory_limit: 4Gi}   # every task
      tasks:                                                  # by task name (see the compiled pipeline)
        distill: {cpu: "2", memory: 4Gi, memory_limit: 8Gi}

Tasks that train a network (each technique names its own: `Technique.training_tasks`) default to more
than the rest.
They are set on each task when the pipeline is built, so they land in the compiled IR a cluster
runs; kfp.local ignores them. They never change a variant, so they are not in the config hash.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from modelpress.core.config import FrozenConfig
from modelpress.errors import ModelpressError

_CPU = r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$"
_MEMORY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"


def training_tasks() -> set[str]:
    """The pipeline's tasks that train a network, as the techniques declare them: more CPU and memory by default."""
    from modelpress.core.technique import techniques

    return {name for t in techniques() for name in t.training_tasks()}


class TaskResources(FrozenConfig):
    cpu: str | None = Field(default=None, pattern=_CPU, description="CPU request: cores (\"2\") or millicores "
                            "(\"500m\").")
    cpu_limit: str | None = Field(default=None, pattern=_CPU, description="CPU limit; None: no limit.")
    memory: str | None = Field(default=None, pattern=_MEMORY, description="Memory request, e.g. 1Gi.")
    memory_limit: str | None = Field(default=None, pattern=_MEMORY, description="Memory limit, e.g. 4Gi.")
    accelerator: str | None = Field(
        default=None, pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
        description="Accelerator resource, e.g. nvidia.com/gpu. Evaluate defaults to its targets' own when they "
        "all name the same one (nvidia-* targets: nvidia.com/gpu); None: none.",
    )
    accelerator_count: int | None = Field(default=None, ge=1, le=16,
                                          description="How many of `accelerator`; None: 1.")

    def over(self, base: TaskResources) -> TaskResources:
        """These values where set, `base`'s elsewhere."""
        return TaskResources(**{**base.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)})


# Tasks that run the candidate on the target's own provider: a GPU target's need a GPU.
ON_TARGET_TASKS = ("evaluate",)


class DefaultResources(TaskResources):
    """What every task gets; a recipe that sets one key keeps the others."""

    cpu: str | None = Field(default="500m", pattern=_CPU, description="CPU request.")
    memory: str | None = Field(default="1Gi", pattern=_MEMORY, description="Memory request.")
    memory_limit: str | None = Field(default="4Gi", pattern=_MEMORY, description="Memory limit.")


class TrainingResources(TaskResources):
    cpu: str | None = Field(default="2", pattern=_CPU, description="CPU request.")
    memory: str | None = Field(default="2Gi", pattern=_MEMORY, description="Memory request.")
    memory_limit: str | None = Field(default="8Gi", pattern=_MEMORY, description="Memory limit.")


class ResourcesConfig(FrozenConfig):
    default: DefaultResources = Field(default_factory=DefaultResources,
                                      description="Requests and limits of every task.")
    training: TrainingResources = Field(
        default_factory=TrainingResources,
        description="Over `default`, for the tasks that train a network (distill, prune, NAS workers and the "
        "like; each technique declares its own).",
    )
    tasks: dict[str, TaskResources] = Field(
        default_factory=dict, max_length=64,
        description="Over the above, by task name as the compiled pipeline names it (e.g. distill, evaluate).",
    )

    @field_validator("tasks")
    @classmethod
    def _names(cls, tasks: dict[str, TaskResources]) -> dict[str, TaskResources]:
        # Recipes name steps as sections do (deep_compress); kfp names the tasks with hyphens.
        return {name.replace("_", "-"): r for name, r in tasks.items()}

    def for_task(self, name: str, targets: tuple[str, ...] = ()) -> TaskResources:
        """What task `name` gets in a pipeline for `targets` (the recipe's)."""
        base = self.training.over(self.default) if _kind(name) in training_tasks() else self.default
        if _kind(name) in ON_TARGET_TASKS and (accelerator := _shared_accelerator(targets)):
            base = TaskResources(accelerator=accelerator).over(base)
        own = self.tasks.get(name) or self.tasks.get(_kind(name))
        return own.over(base) if own is not None else base


def _shared_accelerator(targets: tuple[str, ...]) -> str | None:
    """The targets' accelerator when they all name the same one. The targets share one fan-out, so a recipe
    mixing GPU and CPU targets gets none by default (set resources.tasks.evaluate.accelerator)."""
    from modelpress.core.hardware import parse_target

    kinds = {parse_target(t).accelerator for t in targets}
    return kinds.pop() if len(kinds) == 1 else None


def _kind(task_name: str) -> str:
    """kfp names repeated tasks `evaluate-2`; they share `evaluate`'s settings."""
    head, _, tail = task_name.rpartition("-")
    return head if head and tail.isdigit() else task_name


def apply_to_pipeline(config: ResourcesConfig, targets: tuple[str, ...] = ()) -> None:
    """Set requests and limits on every task of the pipeline being built for `targets` (call inside the
    pipeline function)."""
    from kfp.dsl import pipeline_context

    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    names = set()
    for name, task in pipeline.tasks.items():
        if not hasattr(task, "set_cpu_request"):  # a nested graph, not a container task
            continue
        names |= {name, _kind(name)}
        _apply(task, config.for_task(name, targets))
    if unknown := sorted(set(config.tasks) - names):
        raise ModelpressError(f"resources.tasks names {', '.join(unknown)}, which this pipeline does not run",
                              f"use its task names: {', '.join(sorted(n for n in names if n == _kind(n)))}")


def _apply(task: Any, r: TaskResources) -> None:
    if r.cpu:
        task.set_cpu_request(r.cpu)
    if r.cpu_limit:
        task.set_cpu_limit(r.cpu_limit)
    if r.memory:
        task.set_memory_request(r.memory)
    if r.memory_limit:
        task.set_memory_limit(r.memory_limit)
    if r.accelerator:
        task.set_accelerator_type(r.accelerator)
        task.set_accelerator_limit(r.accelerator_count or 1)
