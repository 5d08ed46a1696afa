"""Progress lines from pipeline steps and techniques: stderr, one prefix, flushed at once.

A per-target task names its target once (`for_target`), and every line it prints carries it:
the targets' tasks run side by side, so their lines interleave in the run's output.
"""

from __future__ import annotations

import sys

_target: str | None = None


def for_target(target: str | None) -> None:
    global _target
    _target = target


def say(msg: str) -> None:
    where = f"[{_target}] " if _target else ""
    print(f"[modelpress] {where}{msg}", file=sys.stderr, flush=True)
