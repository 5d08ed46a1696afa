"""What a registered model name and an alias may hold.

MLflow refuses `/` and `:` in names and reserves the aliases `latest` and `v<N>`. Quotes, backticks
and backslashes pass its checks but break the filter strings every search builds, so modelpress
refuses them up front, before any work, with the same line wherever a name comes in.
"""

from __future__ import annotations

import re

from modelpress.errors import ModelpressError

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$")
_NOT_IN_NAMES = "/:'\"`\\"
NAME_FIX = "use letters, digits, '.', '-', '_' and spaces (not / : quotes, backticks or backslashes)"
ALIAS_FIX = "use letters, digits, - and _, starting with a letter (at most 63); not latest or v<N>"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a registered model's name, or None."""
    if not name or not name.strip():
        return "a registered model name is empty"
    if name != name.strip():
        return f"registered model name {name!r} starts or ends with a space"
    if len(name) > 256:
        return f"registered model name {name[:40]!r}... is longer than 256 characters"
    bad = sorted({c for c in name if c in _NOT_IN_NAMES or not c.isprintable()})
    if bad:
        return f"registered model name {name!r} holds {' '.join(repr(c) for c in bad)}"
    return None


def alias_problem(alias: str) -> str | None:
    """Why `alias` cannot be set on a model version, or None (MLflow reserves latest and v<N>)."""
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        return f"alias {alias!r} is reserved by MLflow"
    if not _ALIAS.match(alias):
        return f"alias {alias!r} is not usable"
    return None


def check_model_name(name: str) -> str:
    if (problem := name_problem(name)) is not None:
        raise ModelpressError(problem, NAME_FIX)
    return name


def check_alias(alias: str) -> str:
    if (problem := alias_problem(alias)) is not None:
        raise ModelpressError(problem, ALIAS_FIX)
    return alias
