"""The one launcher every technique step shares: its section in, the technique applied, notes and metrics out.

A technique's KFP component (`components/<name>/component.py`) calls `technique_step`; no kfp here.
A recipe without the technique's section hands the step `null`, and the model passes through
unchanged, so one compiled pipeline serves every recipe.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from modelpress.core.artifacts import read_notes, write_notes
from modelpress.core.progress import say
from modelpress.core.technique import Result, Technique, get_technique


def parse_section(technique: Technique, config_json: str | None) -> Any:
    """The technique's typed config, or None when the recipe leaves it out."""
    import json

    body = json.loads(config_json) if config_json else None
    return None if body is None else technique.parse_config(body)


def apply_technique(
    name: str, config: Any, model_in: Path, dataset: Path | None, model_out: Path, target: str | None = None,
    **kwargs: Any,
) -> Result | None:
    """Apply technique `name`; without a config, copy the model folder through and return None."""
    from modelpress.core.data import DatasetSplits
    from modelpress.core.hardware import parse_target

    if config is None:
        shutil.copytree(model_in, model_out, dirs_exist_ok=True)
        say(f"{name}: off (not in the recipe); the model passes through")
        return None
    data = DatasetSplits.load(dataset) if dataset else None
    return get_technique(name).apply(
        Path(model_in), data, config, parse_target(target) if target else None, Path(model_out), **kwargs
    )


def record(name: str, model_in: Path, model_out: Path, result: Result, **extra: Any) -> dict[str, float]:
    """Keep what earlier steps noted, add this technique's notes and metrics, print its summary."""
    write_notes(Path(model_out), {**read_notes(Path(model_in)),
                                  name: {**result.notes, "metrics": result.metrics, **extra}})
    for line in get_technique(name).describe(result):
        say(line)
    return result.metrics


def technique_step(name: str, config_json: str | None, model_in: Path, dataset: Path, model_out: Path) -> dict[str, float]:
    """A target-independent technique on the model in `model_in`: its metrics ({} when it is off)."""
    config = parse_section(get_technique(name), config_json)
    result = apply_technique(name, config, model_in, dataset, model_out)
    return {} if result is None else record(name, model_in, model_out, result)
