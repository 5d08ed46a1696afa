"""Moving aliases: promote a vetted variant, roll an alias back, read the history.

Every move is an MLflow run (kind `alias_move`) recording the model, the alias, the
version it left and the one it went to. Runs are append-only, so concurrent moves never
overwrite each other's record, and the history reads back with one search. The record
is written before the alias moves and finished after; a move that did not complete
stays RUNNING or FAILED and is never used by `rollback`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.retry import retrying
from modelpress.registry.variants import has_lineage, model_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: str | None
    to_version: str
    action: str
    status: str
    time_ms: int
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases[alias]) if alias in aliases else None


def _version(client: MlflowClient, name: str, version: str) -> Any:
    versions = {str(mv.version): mv for mv in model_versions(client, name)}
    if not versions:
        raise ModelpressError(f"registered model {name!r} not found or has no versions",
                              "check the name with `modelpress variants <source model>`")
    if str(version) not in versions:
        raise ModelpressError(f"model {name!r} has no version {version} (versions: {', '.join(sorted(versions, key=int))})",
                              "pick an existing version")
    return versions[str(version)]


_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$")


def check_alias(alias: str) -> str:
    """MLflow reserves `latest` and `v<N>`; anything else must be a plain name."""
    if not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ModelpressError(f"alias {alias!r} is not usable",
                              "use letters, digits, - and _, starting with a letter; not latest or v<N>")
    return alias


def _experiment(client: MlflowClient) -> str:
    import mlflow

    from modelpress.registry.store import ensure_experiment

    return ensure_experiment(client, mlflow.get_tracking_uri())  # connect() set it to this client's store


def _move(client: MlflowClient, name: str, alias: str, version: str, action: str) -> AliasMove:
    before = _alias_version(client, name, alias)
    run = client.create_run(
        _experiment(client),
        run_name=f"{action} {name}@{alias} -> {version}",
        tags={T.KIND: T.ALIAS_MOVE, T.MOVE_MODEL: name, T.MOVE_ALIAS: alias, T.MOVE_FROM: before or "",
              T.MOVE_TO: str(version), T.MOVE_ACTION: action},
    )
    try:
        retrying(lambda: client.set_registered_model_alias(name, alias, version))
    except Exception:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
    return AliasMove(name, alias, before, str(version), action, "FINISHED", run.info.start_time, run.info.run_id)


def promote(client: MlflowClient, name: str, version: str, alias: str) -> AliasMove:
    """Point `alias` of variant model `name` at `version`, only if that variant passed its gates."""
    check_alias(alias)
    mv = _version(client, name, version)
    if not has_lineage(mv.tags):
        raise ModelpressError(f"{name}/{version} is not a modelpress variant with lineage tags",
                              "promote a version that `modelpress variants` lists")
    if mv.tags.get(T.VERDICT) != "passed":
        raise ModelpressError(f"{name}/{version}: its gate verdict is {mv.tags.get(T.VERDICT)!r}, not passed",
                              "only variants that passed their gates can be promoted")
    return _move(client, name, alias, str(version), "promote")


def history(client: MlflowClient, name: str, alias: str | None = None) -> list[AliasMove]:
    """Alias moves on `name` (optionally one alias), newest first."""
    exp = _experiment(client)
    where = f"tags.`{T.KIND}` = '{T.ALIAS_MOVE}' and tags.`{T.MOVE_MODEL}` = '{name}'"
    if alias:
        where += f" and tags.`{T.MOVE_ALIAS}` = '{alias}'"
    moves, token = [], None
    while True:
        page = client.search_runs([exp], where, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        for r in page:
            t = r.data.tags
            moves.append(AliasMove(name, t[T.MOVE_ALIAS], t[T.MOVE_FROM] or None, t[T.MOVE_TO], t[T.MOVE_ACTION],
                                   r.info.status, r.info.start_time, r.info.run_id))
        token = page.token
        if not token:
            return moves


def rollback(client: MlflowClient, name: str, alias: str) -> AliasMove:
    """Point `alias` back at the version it held before its last completed move."""
    check_alias(alias)
    last = next((m for m in history(client, name, alias) if m.status == "FINISHED"), None)
    if last is None:
        raise ModelpressError(f"alias {alias!r} of {name!r} has no recorded move to roll back",
                              "aliases are rolled back only after `modelpress promote` moved them")
    if last.from_version is None:
        raise ModelpressError(f"alias {alias!r} of {name!r} was not set before its last move (to version "
                              f"{last.to_version}); there is nothing to roll back to",
                              "promote a version instead, or delete the alias in MLflow")
    _version(client, name, last.from_version)  # it must still exist
    return _move(client, name, alias, last.from_version, "rollback")
