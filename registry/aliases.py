"""Every alias write goes through here, and each move is recorded.

A move is an MLflow run (kind `alias_move`) naming the model, the alias, the version it left and
the one it went to, and why (`register`, `reuse`, `promote`, `rollback`, `source`). Runs are
append-only, so concurrent moves never overwrite each other's record, and the history reads back
with one search. The record is written before the alias moves and finished after; a move that did
not complete stays RUNNING or FAILED and is never used by `rollback`. Setting an alias to the
version it already names is not a move, and records nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelpress.registry import tags as T
from modelpress.registry.retry import retrying

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


def get_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version `alias` of `name` points at, or None."""
    aliases = client.get_registered_model(name).aliases
    return str(aliases[alias]) if alias in aliases else None


def _experiment(client: MlflowClient) -> str:
    from modelpress.registry.store import ensure_experiment

    return ensure_experiment(client, client.tracking_uri)


def set_alias(client: MlflowClient, name: str, alias: str, version: str, action: str) -> AliasMove | None:
    """Point `alias` of `name` at `version`, recording the move; None when it already pointed there."""
    before = get_alias(client, name, alias)
    if before == str(version):
        return None
    run = client.create_run(
        _experiment(client),
        run_name=f"{action} {name}@{alias} -> {version}",
        tags={T.KIND: T.ALIAS_MOVE, T.MOVE_MODEL: name, T.MOVE_ALIAS: alias, T.MOVE_FROM: before or "",
              T.MOVE_TO: str(version), T.MOVE_ACTION: action, **T.origin_tags()},
    )
    try:
        retrying(lambda: client.set_registered_model_alias(name, alias, str(version)))
    except Exception:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
    return AliasMove(name, alias, before, str(version), action, "FINISHED", run.info.start_time, run.info.run_id)


def search_alias_moves(client: MlflowClient, name: str, alias: str | None = None) -> list[AliasMove]:
    """Recorded moves on `name` (optionally one alias), newest first."""
    where = f"tags.`{T.KIND}` = '{T.ALIAS_MOVE}' and tags.`{T.MOVE_MODEL}` = '{name}'"
    if alias:
        where += f" and tags.`{T.MOVE_ALIAS}` = '{alias}'"
    moves, token = [], None
    while True:
        page = client.search_runs([_experiment(client)], where, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        for r in page:
            t = r.data.tags
            moves.append(AliasMove(name, t[T.MOVE_ALIAS], t[T.MOVE_FROM] or None, t[T.MOVE_TO], t[T.MOVE_ACTION],
                                   r.info.status, r.info.start_time, r.info.run_id))
        token = page.token
        if not token:
            return moves
