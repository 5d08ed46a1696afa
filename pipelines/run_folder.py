"""A local run's folder while it runs, and what the next start does about one whose process died.

`run_local` holds a lock on `<run folder>/.running` for the whole run and deletes the file when the
run ends, however it ends short of SIGKILL. A `.running` file whose lock nobody holds is therefore a
run killed mid-way: its MLflow runs still say RUNNING, and its scratch folder and error file are
left. `reap` marks those MLflow runs KILLED (every task tags its runs with the run folder's name,
`modelpress.local_run`) and removes the leftovers. The task outputs and `tasks.log` stay, for the
post-mortem.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUNNING = ".running"
SCRATCH = "tmp"
ERROR_FILE = ".modelpress-error.txt"


@contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Mark `run_dir` as running for the block: a lock a dead process no longer holds."""
    pending = run_dir / f"{RUNNING}.new"
    fh = open(pending, "w")  # noqa: SIM115 - held for the whole block
    fcntl.flock(fh, fcntl.LOCK_EX)
    # Locked before it has its name, so `reap` never sees an unlocked marker of a live run.
    pending.rename(run_dir / RUNNING)
    try:
        yield
    finally:
        (run_dir / RUNNING).unlink(missing_ok=True)
        fh.close()


def reap(runs_dir: Path, connect: Callable[[], Any], say: Callable[[str], None]) -> list[str]:
    """Clean up after every run under `runs_dir` whose process died; returns the folders' names."""
    done, client = [], None
    for marker in sorted(runs_dir.glob(f"run-*/{RUNNING}")):
        try:
            fh = open(marker, "a")  # noqa: SIM115 - closed below
        except OSError:  # gone since the glob: its run ended, or another start reaped it
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive: its process holds the lock
            if not marker.exists():  # reaped by another start between our open and our lock
                continue
            folder = marker.parent
            client = client or connect()  # one connection however many runs died
            killed = _mark_killed(client, folder.name)
            shutil.rmtree(folder / SCRATCH, ignore_errors=True)
            (folder / ERROR_FILE).unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
        done.append(folder.name)
        say(f"an earlier run was killed mid-way ({folder}): {killed} MLflow run{'s' * (killed != 1)} marked "
            "KILLED, its scratch files removed; its task log stays")
    return done


def _mark_killed(client: Any, folder_name: str) -> int:
    """Set every still-RUNNING MLflow run a dead local run opened to KILLED; returns how many."""
    from modelpress.registry import tags as T
    from modelpress.registry.store import ensure_experiment

    where = f"tags.`{T.LOCAL_RUN}` = '{folder_name}' and attributes.status = 'RUNNING'"
    runs = client.search_runs([ensure_experiment(client, client.tracking_uri)], where, max_results=1000)
    for run in runs:
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


def local_run_env(run_dir: Path) -> dict[str, str]:
    """What a task needs in its environment to tag its MLflow runs with this run's folder."""
    from modelpress.registry import tags as T

    return {T.LOCAL_RUN_ENV: run_dir.name}
