"""Run a step so user errors end as one line and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from modelpress.errors import ModelpressError

# The CLI sets this so it can show a failed task's one-line reason after kfp.local returns.
ERROR_FILE_ENV = "MODELPRESS_ERROR_FILE"


@contextmanager
def user_errors(step: str) -> Iterator[None]:
    """A ModelpressError ends the task as its one line; any other exception too, as a crash of `step`."""
    try:
        yield
    except ModelpressError as exc:
        _fail(f"{step}: {exc}")
    except Exception as exc:  # noqa: BLE001 - the traceback still goes to the task log below
        import traceback

        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _fail(f"{step} crashed: {type(exc).__name__}: {first}; this is a modelpress bug or an input it does not "
              "check yet: please report it with the task log")


def _fail(line: str) -> None:
    print(f"modelpress error: {line}", file=sys.stderr, flush=True)
    if path := os.environ.get(ERROR_FILE_ENV):
        with open(path, "a") as fh:
            fh.write(line + "\n")
    raise SystemExit(1) from None
