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
    try:
        yield
    except ModelpressError as exc:
        line = f"{step}: {exc}"
        print(f"modelpress error: {line}", file=sys.stderr, flush=True)
        if path := os.environ.get(ERROR_FILE_ENV):
            with open(path, "a") as fh:
                fh.write(line + "\n")
        raise SystemExit(1) from None
