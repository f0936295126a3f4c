"""Slurm's command-line clients (``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``scancel``) and what they answer."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from milabox.errors import RunError

#: States after which a job never runs again (Slurm's JobState names).
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                      "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})


@dataclass(frozen=True)
class JobState:
    """What Slurm says of a job.

    Attributes:
        state: Slurm's JobState (``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``TIMEOUT``...), or
            ``UNKNOWN`` when Slurm no longer knows the job.
        exit_code: the batch script's exit code, once known.
        reason: Slurm's reason (e.g. ``NonZeroExitCode``, ``Resources``), if any.
        started, ended: ISO times, once known.
    """

    state: str
    exit_code: int | None = None
    reason: str = ""
    started: str | None = None
    ended: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the job will not run again."""
        return self.state in TERMINAL or self.state == "UNKNOWN"


class Slurm:
    """Slurm's command-line clients (``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``scancel``).

    Args:
        environ: their environment (e.g. ``SLURM_CONF``); default ``os.environ``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=self.environ,
                                  check=False)
        except FileNotFoundError:
            raise RunError(f"`{args[0]}` is not installed here; run milabox slurm on a host with Slurm's client "
                           "commands (Debian: apt-get install slurm-client)") from None
        except subprocess.TimeoutExpired:
            raise RunError(f"`{' '.join(args[:2])}` did not answer within {timeout:g} s; is slurmctld up?") from None

    def submit(self, script: Path) -> str:
        """Submit a script with ``sbatch --parsable``.

        Args:
            script: the sbatch script.

        Returns:
            The job id.

        Raises:
            RunError: sbatch refused it (the message is sbatch's own).
        """
        proc = self._run("sbatch", "--parsable", str(script))
        job_id = proc.stdout.strip().split(";")[0]
        if proc.returncode != 0 or not job_id.isdigit():
            why = (proc.stderr or proc.stdout).strip().splitlines()
            raise RunError(f"sbatch refused {script.name}: {why[-1] if why else f'exit code {proc.returncode}'}")
        return job_id

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """Every job's state: ``squeue`` for those Slurm still holds, then ``scontrol`` or ``sacct`` for the others.

        Args:
            job_ids: the jobs.

        Returns:
            job id -> state (``UNKNOWN`` for a job no client knows).

        Raises:
            RunError: a client is not installed or does not answer.
        """
        if not job_ids:
            return {}
        found: dict[str, JobState] = {}
        proc = self._run("squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%i|%T|%r")
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3 and parts[0] in job_ids:
                    found[parts[0]] = JobState(parts[1], reason="" if parts[2] == "None" else parts[2])
        for job_id in job_ids:
            state = found.get(job_id)
            if state is None or state.terminal:  # the exit code and times: only scontrol and sacct know them
                found[job_id] = self._finished(job_id) or state or JobState("UNKNOWN")
        return found

    def _finished(self, job_id: str) -> JobState | None:
        proc = self._run("scontrol", "show", "job", "--oneliner", job_id)
        if proc.returncode == 0 and "JobState=" in proc.stdout:
            fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", proc.stdout))
            return JobState(fields.get("JobState", "UNKNOWN"), _exit_code(fields.get("ExitCode")),
                            "" if fields.get("Reason") == "None" else fields.get("Reason", ""),
                            _slurm_time(fields.get("StartTime")), _slurm_time(fields.get("EndTime")))
        proc = self._run("sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
                         "--format=JobID,State,ExitCode,Start,End")
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) == 5 and parts[0] == job_id:
                return JobState(parts[1].split()[0], _exit_code(parts[2]), "", _slurm_time(parts[3]),
                                _slurm_time(parts[4]))
        return None

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs (``scancel``); jobs already gone are ignored.

        Args:
            job_ids: the jobs.

        Raises:
            RunError: scancel is not installed or does not answer.
        """
        if job_ids:
            self._run("scancel", *job_ids)


def _exit_code(text: str | None) -> int | None:
    code, _, signal = (text or "").partition(":")
    if not code.isdigit():
        return None
    return 128 + int(signal) if signal.isdigit() and int(signal) and not int(code) else int(code)


def _slurm_time(text: str | None) -> str | None:
    """Slurm's local ``2026-11-24T10:00:00`` as an ISO time with its UTC offset; None for ``Unknown``/``None``."""
    try:
        return dt.datetime.fromisoformat(text or "").astimezone(dt.UTC).isoformat(timespec="seconds")
    except ValueError:
        return None
