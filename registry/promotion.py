"""Release decisions on aliases: promote a vetted variant, roll an alias back, read the history.

The moves themselves go through `registry.aliases`, which records each one as an MLflow run;
here is the policy: only a variant that passed its gates is promoted, and a rollback returns
to the version the alias held before its last completed move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError
from modelpress.registry import tags as T
from modelpress.registry.aliases import AliasMove, search_alias_moves, set_alias
from modelpress.registry.names import check_alias, check_model_name
from modelpress.registry.variants import has_lineage, model_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _version(client: MlflowClient, name: str, version: str) -> Any:
    versions = {str(mv.version): mv for mv in model_versions(client, name)}
    if not versions:
        raise ModelpressError(f"registered model {name!r} not found or has no versions",
                              "check the name with `modelpress variants <source model>`")
    if str(version) not in versions:
        raise ModelpressError(f"model {name!r} has no version {version} (versions: {', '.join(sorted(versions, key=int))})",
                              "pick an existing version")
    return versions[str(version)]


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


def _move(client: MlflowClient, name: str, alias: str, version: str, action: str) -> AliasMove:
    """Move `alias`; when it already points at `version`, nothing moves and nothing is recorded (status UNCHANGED)."""
    move = set_alias(client, name, alias, version, action)
    return move or AliasMove(name, alias, version, version, action, "UNCHANGED", 0, "")


def history(client: MlflowClient, name: str, alias: str | None = None) -> list[AliasMove]:
    """Alias moves on `name` (optionally one alias), newest first."""
    check_model_name(name)
    if alias is not None:
        check_alias(alias)
    _check_exists(client, name)
    return search_alias_moves(client, name, alias)


def _check_exists(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ModelpressError(f"registered model {name!r} not found",
                              "check the name with `modelpress variants <source model>`") from None


def rollback(client: MlflowClient, name: str, alias: str) -> AliasMove:
    """Point `alias` back at the version it held before its last completed move."""
    check_alias(alias)
    check_model_name(name)
    _check_exists(client, name)
    last = next((m for m in search_alias_moves(client, name, alias) if m.status == "FINISHED"), None)
    if last is None:
        raise ModelpressError(f"alias {alias!r} of {name!r} has no recorded move to roll back",
                              "aliases are rolled back only after `modelpress promote` moved them")
    if last.from_version is None:
        raise ModelpressError(f"alias {alias!r} of {name!r} was not set before its last move (to version "
                              f"{last.to_version}); there is nothing to roll back to",
                              "promote a version instead, or delete the alias in MLflow")
    _version(client, name, last.from_version)  # it must still exist
    return _move(client, name, alias, last.from_version, "rollback")
