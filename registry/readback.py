"""Reading the registry back: every variant of a source, and one variant's lineage."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.names import check_model_name
from modelpress.registry.uris import parse_model_uri
from modelpress.registry.variants import has_lineage, model_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _aliases(aliases: dict[str, Any], version: str) -> list[str]:
    return sorted(a for a, v in aliases.items() if str(v) == str(version))


def list_variants(client: MlflowClient, source: str) -> list[dict[str, Any]]:
    """Every complete variant of source model `source`, over all targets; oldest first per target."""
    if not client.search_registered_models(f"name = '{source}'"):
        raise ModelpressError(f"registered model {source!r} not found", "pass a source model's name, e.g. digits-cnn")
    rows = []
    token = None
    while True:
        page = client.search_registered_models(f"name LIKE '{source}.%'", max_results=1000, page_token=token)
        for rm in page:
            for mv in sorted(model_versions(client, rm.name), key=lambda v: int(v.version)):
                if not has_lineage(mv.tags) or mv.tags[T.SOURCE_NAME] != source:
                    continue  # never list a version without its lineage
                rows.append({
                    "uri": f"models:/{rm.name}/{mv.version}", "name": rm.name, "version": str(mv.version),
                    "target": mv.tags[T.TARGET], "source_version": mv.tags[T.SOURCE_VERSION],
                    "chain": mv.tags[T.CHAIN].split(">"), "aliases": _aliases(rm.aliases, mv.version),
                    "verdict": mv.tags[T.VERDICT], "config_hash": mv.tags[T.CONFIG_HASH],
                    "recipe": mv.tags.get(T.RECIPE), "created_ms": mv.creation_timestamp, "metrics": T.metrics_from_tags(mv.tags),
                })
        token = page.token
        if not token:
            return rows


def lineage(client: MlflowClient, uri: str) -> dict[str, Any]:
    """The chain from a variant (models:/<name>/<version> or @alias) back to its source version."""
    from modelpress.registry.source import resolve_source

    ref = resolve_source(client, uri)
    if not has_lineage(ref.tags):
        raise ModelpressError(f"{ref.version_uri} is not a modelpress variant (no lineage tags)",
                              "pass a variant URI; `modelpress variants <source>` lists them")
    t = ref.tags
    source_uri = f"models:/{t[T.SOURCE_NAME]}/{t[T.SOURCE_VERSION]}"
    source: dict[str, Any] = {"uri": source_uri, "name": t[T.SOURCE_NAME], "version": t[T.SOURCE_VERSION]}
    try:
        src = client.get_model_version(t[T.SOURCE_NAME], t[T.SOURCE_VERSION])
        source.update(run_id=src.run_id, dataset=(src.tags or {}).get(T.DATASET))
    except Exception:  # noqa: BLE001 - a deleted source must not hide the rest of the lineage
        source["missing"] = True
    aliases = client.get_registered_model(ref.name).aliases
    data = json.loads(t.get(T.NOTE + "data", "{}"))  # where the run's data came from, and the task it set
    return {
        "variant": ref.version_uri, "aliases": _aliases(aliases, ref.version), "target": t[T.TARGET],
        "verdict": t[T.VERDICT], "chain": t[T.CHAIN].split(">"), "config_hash": t[T.CONFIG_HASH],
        "recipe": t.get(T.RECIPE), "key": t[T.KEY], "pipeline_run_id": t.get(T.PIPELINE_RUN), "run_id": ref.run_id,
        "training_run_id": t.get(T.TRAINING_RUN), "dataset": t.get(T.DATASET), "source": source,
        "metrics": T.metrics_from_tags(t), "data": data,
    }


def parse_variant_name(text: str) -> str:
    """Accept `name` or `models:/name/...`; return the registered model name."""
    return parse_model_uri(text).name if text.startswith("models:/") else check_model_name(text)
