"""A recipe as the pipeline's arguments: each component's own section, and nothing else of the recipe.

`modelpress run`, `compile`, `submit` and `schedule` all call `pipeline_arguments`, so the
values a cluster run gets are the ones a local run gets. Sections are JSON strings (`null`
for a technique the recipe does not use: its step passes the model through).
"""

from __future__ import annotations

import json
from typing import Any

# The parameters every pipeline has besides the techniques' sections.
FIXED = ("tracking_uri", "targets", "force", "run", "resolve", "data_checks", "evaluate", "gates", "model_checks", "variant")


def technique_sections() -> list[str]:
    """The recipe keys of the registered techniques, in pipeline order."""
    from modelpress.core.technique import techniques

    return [t.section for t in techniques() if t.section]


def parameter_names() -> list[str]:
    from modelpress.core.technique import techniques

    return [*FIXED, *technique_sections(), *(k for t in techniques() for k in t.pipeline_parameters)]


def resolve_config(recipe: Any) -> Any:
    """The resolve step's section: source and data, and what the recipe's later steps need of them."""
    from modelpress.components.resolve.settings import ResolveConfig

    return ResolveConfig(
        source=recipe.source, trust_pickled_source=recipe.trust_pickled_source, data=recipe.data, task=recipe.task,
        needs_torch_source=tuple(recipe.needs_torch_source()), needs_labels=tuple(recipe.needs_labels()),
        unmeasurable={k: tuple(v) for k, v in recipe.unmeasurable_gates().items()},
    )


def pipeline_arguments(recipe: Any, tracking_uri: str, force: bool = False) -> dict[str, Any]:
    """`force`: build every target even where its variant is registered already."""
    from modelpress.core.run_context import RunContext
    from modelpress.core.technique import techniques

    def section(value: Any) -> str:
        return json.dumps(None if value is None else value.model_dump(mode="json"))

    run = RunContext(source=recipe.source, config_hash=recipe.config_hash(),
                     trust_pickled_source=recipe.trust_pickled_source, recipe=recipe.name,
                     objective=recipe.objective, latency_batch=recipe.latency_batch())
    gates = None if recipe.gates is None else [g.model_dump(mode="json") for g in recipe.gates]
    return {
        "tracking_uri": tracking_uri,
        "targets": list(recipe.targets),
        "force": force,
        "run": run.model_dump_json(),
        "resolve": resolve_config(recipe).model_dump_json(),
        "data_checks": section(recipe.data_checks),
        "evaluate": section(recipe.evaluate),
        "gates": json.dumps(gates),
        "model_checks": section(recipe.model_checks),
        "variant": section(recipe.variant),
        **{name: section(getattr(recipe, name)) for name in technique_sections()},
        **{k: v for t in techniques() for k, v in t.parameter_values(t.config_of(recipe)).items()},
    }
