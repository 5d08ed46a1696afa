"""Progress lines from pipeline steps and techniques: stderr, one prefix, flushed at once."""

from __future__ import annotations

import sys


def say(msg: str) -> None:
    print(f"[modelpress] {msg}", file=sys.stderr, flush=True)
