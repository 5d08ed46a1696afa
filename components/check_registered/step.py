"""The first step of every run: pin the source version, and find the targets whose variant already exists.

A variant's key is (source version, recipe config hash, target). When every target's key is
already registered, the pipeline's `dsl.If` skips everything else, so a scheduled run of an
unchanged source costs this one task. `force` ignores what is registered.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from modelpress.core.progress import say


def check_registered_step(run_json: str, variant_json: str, targets: list[str], tracking_uri: str, force: bool,
                          source_out: Path, registered_out: Path) -> list[str]:
    """The targets still to build; writes the pinned source (SourceRef JSON) and the variants found."""
    from modelpress.core.config import parse_config
    from modelpress.core.run_context import parse_run
    from modelpress.registry import source as src
    from modelpress.registry import tags as T
    from modelpress.registry.store import connect
    from modelpress.registry.variants import (
        VariantConfig,
        alias_phrase,
        find_variant,
        point_alias,
        variant_key,
        variant_name,
    )

    run = parse_run(run_json)
    variant = parse_config(VariantConfig, variant_json, "variant")
    client = connect(tracking_uri)
    ref = src.resolve_source(client, run.source)
    say(f"source: {run.source} -> {ref.version_uri}")
    Path(source_out).write_text(json.dumps(asdict(ref)))
    todo: list[str] = []
    found: list[dict[str, Any]] = []
    for target in targets:
        name = variant_name(ref.name, target)
        mv = None if force else find_variant(client, name, variant_key(ref, run.config_hash, target))
        if mv is None:
            todo.append(target)
            continue
        alias_on = point_alias(client, name, variant, mv, "reuse")
        found.append({"target": target, "name": name, "version": str(mv.version), "alias": variant.alias,
                      "alias_on": alias_on, "metrics": T.metrics_from_tags(mv.tags)})
        say(f"models:/{name}/{mv.version} {alias_phrase(variant.alias, str(mv.version), alias_on)} is already "
            f"registered for {ref.version_uri}, this recipe and {target}; not run again (--force runs it anyway)")
    Path(registered_out).write_text(json.dumps(found, indent=2))
    if not todo:
        say("every target's variant is registered already: nothing else runs")
    return todo
