"""The one error type users see.

Every expected failure (bad config, unknown target, missing registry entry,
corrupt model, failed gate) raises `ModelpressError`. The CLI and the KFP
task wrapper print it as one line and exit non-zero, with no traceback.
"""

from __future__ import annotations


class ModelpressError(Exception):
    """A problem the user can fix. `str()` is one line: the problem, then the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}; {fix}")


class GateFailed(ModelpressError):
    """A candidate did not meet its gates. Not a crash: the registry stays untouched."""
