"""What the resolve step needs of a recipe: where the model and data are, how outputs are scored,
and what the later steps will ask of both (so a mismatch stops here, before any compute)."""

from __future__ import annotations

from pydantic import Field

from modelpress.core.config import FrozenConfig
from modelpress.core.data_source import DataConfig
from modelpress.core.tasks import TaskConfig
from modelpress.errors import ModelpressError


class ResolveConfig(FrozenConfig):
    source: str = Field(description="Source model URI in the registry.")
    trust_pickled_source: bool = Field(default=False, description="The recipe's trust_pickled_source.")
    data: DataConfig = Field(default_factory=DataConfig, description="The recipe's data section.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="The recipe's task section.")
    needs_torch_source: tuple[str, ...] = Field(
        default=(), description="Sections that train the source's torch weights (refused on an ONNX source).")
    needs_labels: tuple[str, ...] = Field(
        default=(), description="Sections that fine-tune on class labels (refused on other tasks).")
    unmeasurable: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Per task kind, gated metrics a run of that task cannot measure.")

    def check_gates_for(self, task: str, why: str) -> None:
        """Refuse, before any compute, a gate on a metric the run's task does not produce."""
        from modelpress.core.tasks import metrics_of

        if missing := self.unmeasurable.get(task):
            raise ModelpressError(
                f"gate on {missing[0]!r} cannot be measured: this run's task is {task} ({why})",
                f"gate on {', '.join(metrics_of(task))} instead, or set task.kind / data.label")
