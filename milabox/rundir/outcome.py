"""Outcome rules: how an attempt's end (its container's exit and the events it wrote) becomes its status and cause.

Shared by local runs and Slurm jobs, so a crash, a timeout, an OOM kill, "no rate" or an interrupt reads the
same wherever the attempt ran.
"""

from __future__ import annotations

import math
from pathlib import Path

from milabox.engine import Exit
from milabox.rundir.read import read_events


def last_line(path: Path) -> str:
    """The last non-empty line of a text file (300 characters at most), or "" when there is none."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def classify(exit: Exit, events_path: Path, log_path: Path, timeout_s: float) -> tuple[str, str | None, float | None]:
    """Decide an attempt's status and cause from how its container ended and what it wrote.

    Returns:
        (status, cause, rate): ``ok`` with no cause and the measured rate, or ``failed``/``interrupted``
        with a one-line cause.
    """
    events = read_events(events_path)[0] if events_path.exists() else []
    end = next((e for e in reversed(events) if e.kind == "end"), None)
    error = (end.data.get("error") if end else None) or last_line(log_path)
    if exit.interrupted:
        return "interrupted", "interrupted by the user (Ctrl-C or SIGTERM); the rest of the run was skipped", None
    if exit.timed_out:
        return "failed", f"timed out after {timeout_s:g} s (killed)", None
    if exit.oom_killed:
        return "failed", "out of memory (OOM-killed)", None
    if exit.code != 0:
        what = "killed (SIGKILL)" if exit.code == 137 else f"exit code {exit.code}"
        return "failed", (f"{what}: {error}" if error else what), None
    summary = next((e for e in reversed(events) if e.kind == "summary"), None)
    rate = summary.data.get("rate") if summary else None
    if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        return "failed", "no rate reported (the benchmark exited 0 without a positive measured rate)", None
    return "ok", None, float(rate)
