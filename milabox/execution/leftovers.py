"""Leftover containers of dead runs, removed at the next start: after an engine restart or a killed milabox.

A container is a dead run's leftover when it carries the run's labels (``RUN_ID_LABEL`` and ``RUN_DIR_LABEL``,
with ``milabox.benchmark``) and that run's manifest says it ended, names another run id (it was resumed since),
is gone, or names a milabox process of this host that no longer runs. Anything else — another tool's containers,
a live run's, a run of another host whose process cannot be checked — is never touched.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from milabox.engine import CONTAINER_LABEL
from milabox.execution.attempt import RUN_DIR_LABEL, RUN_ID_LABEL
from milabox.rundir.layout import MANIFEST_NAME


def process_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid, its identity.

    Args:
        pid: the process id.

    Returns:
        The start time, or None when no such process runs (or /proc cannot say).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name; field 22 is the 20th of them


def owner() -> dict[str, Any]:
    """The manifest's record of the process that runs it: ``host``, ``pid``, ``pid_started``."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": process_start(os.getpid())}


def _dead(run_id: str, run_dir: str) -> bool:
    try:
        manifest = json.loads((Path(run_dir) / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False  # unreadable: cannot tell, so leave it
    if not isinstance(manifest, dict):
        return False
    if manifest.get("ended") or manifest.get("run_id") != run_id:
        return True
    if manifest.get("host") != socket.gethostname() or not isinstance(manifest.get("pid"), int):
        return False
    return process_start(manifest["pid"]) != manifest.get("pid_started")


def remove_dead_runs(engine: Any) -> int:
    """Remove every container of a dead milabox run (see the module's docstring); nothing else.

    Args:
        engine: the engine (its ``leftovers`` and ``remove_container``).

    Returns:
        How many containers were removed.
    """
    removed = 0
    for container_id, labels in engine.leftovers(RUN_ID_LABEL):
        run_id, run_dir = labels.get(RUN_ID_LABEL), labels.get(RUN_DIR_LABEL)
        if CONTAINER_LABEL in labels and run_id and run_dir and _dead(run_id, run_dir):
            engine.remove_container(container_id)
            removed += 1
    return removed
