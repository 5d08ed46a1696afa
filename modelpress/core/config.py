"""Base class for every typed config: frozen, and unknown keys are errors."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from modelpress.errors import ModelpressError

C = TypeVar("C", bound="FrozenConfig")


class FrozenConfig(BaseModel):
    # NaN and infinity pass every bound check (NaN compares false both ways), so no config takes them.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


def parse_config(cls: type[C], data: Any, where: str) -> C:
    """Validate `data` into `cls`, turning pydantic's report into one line.

    `where` names the source (a file or a config section) so the message
    points at it, for example: `recipe.yaml: quantize.per_chanel: unknown key`.
    """
    try:
        if isinstance(data, (str, bytes)):
            return cls.model_validate_json(data)
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ModelpressError(f"{where}: {_one_line(exc)}", _fix_for(exc, cls)) from None


def _one_line(exc: ValidationError) -> str:
    parts = []
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for err in errors:
        here = tuple(err["loc"])
        if any(len(loc) > len(here) and loc[:len(here)] == here for loc in locs):
            continue  # a container's error that only follows from its item's (an item dropped, then "too short")
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown key")
        else:
            # Our own validators' messages are complete sentences; pydantic prefixes them.
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _fix_for(exc: ValidationError, cls: type[FrozenConfig]) -> str:
    if any(e["type"] == "extra_forbidden" for e in exc.errors()):
        return f"check the spelling; `modelpress config-schema` lists every key of {cls.__name__}"
    return "fix the value and run again"
