"""Cron expressions as Kubeflow's scheduler reads them, checked before anything is sent.

KFP schedules with robfig/cron's six fields: seconds minutes hours day-of-month month
day-of-week. A standard five-field expression is accepted too and gets seconds `0`.
"""

from __future__ import annotations

import re

from modelpress.errors import ModelpressError

_FIELDS = (  # name, low, high, names
    ("seconds", 0, 59, None),
    ("minutes", 0, 59, None),
    ("hours", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>\d+))?$")
_HINT = "use six fields (sec min hour day month weekday), e.g. '0 0 2 * * *' for 02:00 daily"


def _value(text: str, low: int, high: int, names: tuple[str, ...] | None, field: str, expr: str) -> int:
    if names and text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ModelpressError(f"cron {expr!r}: {field} value {text!r} is outside {low}-{high}", _HINT)
    return int(text)


def normalize_cron(expr: str) -> str:
    """The six-field form of `expr`, or a one-line error naming the bad field."""
    parts = expr.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise ModelpressError(f"cron {expr!r} has {len(expr.split())} fields, not 6 (or 5)", _HINT)
    for text, (field, low, high, names) in zip(parts, _FIELDS):
        for item in text.split(","):
            m = _ITEM.match(item)
            if not m:
                raise ModelpressError(f"cron {expr!r}: {field} item {item!r} is not valid", _HINT)
            if m["step"] is not None and int(m["step"]) < 1:
                raise ModelpressError(f"cron {expr!r}: {field} step must be 1 or more", _HINT)
            rng = m["range"]
            if rng == "?" and field not in ("day of month", "day of week"):
                raise ModelpressError(f"cron {expr!r}: '?' only works in day of month or day of week", _HINT)
            if rng in ("*", "?"):
                continue
            lo, _, hi = rng.partition("-")
            a = _value(lo, low, high, names, field, expr)
            if hi and a > _value(hi, low, high, names, field, expr):
                raise ModelpressError(f"cron {expr!r}: {field} range {rng!r} runs backwards", _HINT)
    return " ".join(parts)
