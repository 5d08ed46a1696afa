"""Retrying registry writes that lose a race with another client.

MLflow's stores are not free of write races: two clients setting one alias at once can
both try to insert it (a unique-key violation on PostgreSQL), two creating versions can
both compute the same next number, and SQLite answers "database is locked" while another
writer holds it. Each such call is safe to repeat, so it is retried with jittered backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")

# Messages of failures that another client's concurrent write causes, and that go away.
TRANSIENT = ("UniqueViolation", "duplicate key value", "UNIQUE constraint failed", "database is locked",
             "could not serialize access", "deadlock detected", "IntegrityError")
ATTEMPTS = 8


def is_transient(exc: Exception) -> bool:
    text = str(exc)
    return any(t in text for t in TRANSIENT)


def retrying(call: Callable[[], R], attempts: int = ATTEMPTS) -> R:
    """`call()`, repeated after a transient race; the last failure is raised as it was."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")
