"""``--runtime native``: each attempt as one process of this Python environment (its own torch), no engine, no image.

The same benchmark code (the benchmark folder's entry) and ``milabox_runtime`` run with the variables a container
gets, into the same run-folder files (events, log, telemetry, record, manifest, provenance), judged by the same
outcome rules (:func:`milabox.rundir.outcome.classify`). What a container adds cannot be had natively and is not
pretended: no network isolation, no private filesystem, no memory limit (``--memory`` is refused), one node
(``--nodes`` is refused). Each process leads its own process group, so a timeout or a stop ends its workers too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from milabox.definitions.vendors import Vendor
from milabox.engine import STOP_GRACE_S, Exit
from milabox.errors import ConfigError
from milabox.execution import interrupts
from milabox.execution.attempt import now
from milabox.execution.plan import Attempt, RunOptions, attempt_config
from milabox.execution.telemetry import Telemetry
from milabox.rundir.layout import EVENTS_NAME, FORMAT_VERSION, LOG_NAME, RECORD_NAME, TELEMETRY_NAME, write_json_atomic
from milabox.rundir.outcome import classify

#: The ``--runtime`` value this module implements (one of milabox.execution.plan.RUNTIMES).
NATIVE = "native"


@dataclass(frozen=True)
class ProcessRequest:
    """The exact process of one native attempt.

    Attributes:
        command: the argument vector (this Python, then the benchmark's entry).
        cwd: the benchmark's folder.
        env: the variables milabox sets on top of its own environment (the rest is inherited).
    """

    command: tuple[str, ...]
    cwd: str
    env: dict[str, str]

    def to_dict(self) -> dict:
        """JSON-ready: ``{"command": [...], "cwd": ..., "env": {...}}``."""
        return {**asdict(self), "command": list(self.command)}

    def shell_command(self) -> str:
        """An equivalent shell line, to reproduce the attempt by hand."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"cd {shlex.quote(self.cwd)} && env {env} {shlex.join(self.command)}"


def runtime_path() -> str:
    """The folder that holds the installed ``milabox_runtime`` package (put first on the process's PYTHONPATH)."""
    import milabox_runtime
    return str(Path(milabox_runtime.__file__).resolve().parent.parent)


def process_request(attempt: Attempt, vendor: Vendor, run_dir: Path, options: RunOptions) -> ProcessRequest:
    """The process of one attempt: ``sys.executable <entry>`` in the benchmark folder, a container's variables.

    Args:
        attempt: the attempt.
        vendor: the vendor (its name and device-selection variable).
        run_dir: the run folder; the attempt's folder in it is ``MILABOX_RESULTS``.
        options: the run's options (size, ``--set``, ``--min-seconds``, ``--env``).

    Returns:
        The request.
    """
    bench = attempt.benchmark
    inherited = os.environ.get("PYTHONPATH")
    env = {"MILABOX_CONFIG": json.dumps(attempt_config(bench, options), sort_keys=True),
           "MILABOX_RESULTS": str((run_dir / attempt.folder).resolve()), "MILABOX_BENCHMARK": bench.name,
           # What the runtime image sets (images/templates/runtime.Dockerfile.j2), here for this environment.
           "MILABOX_VENDOR": vendor.name,
           "PYTHONPATH": runtime_path() + (os.pathsep + inherited if inherited else ""), **options.environment}
    if attempt.devices and vendor.device_env:  # natively, GPU ids are selected by the variable too
        env[vendor.device_env] = ",".join(attempt.devices)
    return ProcessRequest((sys.executable, bench.entry), str(Path(bench.folder).resolve()), env)


def check_options(options: RunOptions) -> None:
    """Refuse what a process of this environment cannot honour.

    Raises:
        ConfigError: ``--memory``, ``--nodes``, ``--repeat auto`` or ``--until-stable`` was given.
    """
    if options.memory:
        raise ConfigError(f"--memory {options.memory}: a memory limit (OOM kill) cannot be enforced with --runtime "
                          "native; leave --memory out or use --runtime docker")
    if options.nodes is not None:
        raise ConfigError("--nodes: multi-node runs need --runtime docker; --runtime native runs on one node")
    if options.auto_repeat or options.until_stable:
        raise ConfigError(f"--{'repeat auto' if options.auto_repeat else 'until-stable'}: not available with "
                          "--runtime native; give --repeat N (and --until-sem PCT) or use --runtime docker")


def run_batch(batch: Sequence[Attempt], vendor: Vendor, run_dir: Path, options: RunOptions,
              telemetry: Telemetry | None = None) -> tuple[list[dict], bool]:
    """The native attempt runner of :func:`milabox.execution.local.run`: a batch's attempts one after another.

    Args:
        batch: the attempts (one benchmark's repeat, one per device).
        vendor: the vendor.
        run_dir: the run folder.
        options: the run's options.
        telemetry: the run's telemetry (None: no sampling).

    Returns:
        (the records of the attempts that ran, in order; whether the user interrupted — then the rest of the
        batch did not start: a resume runs it).
    """
    records = []
    for attempt in batch:
        try:
            records.append(run_attempt(attempt, vendor, run_dir, options, telemetry))
        except KeyboardInterrupt:
            records.append(json.loads((run_dir / attempt.folder / RECORD_NAME).read_text()))
            return records, True
    return records, False


def run_attempt(attempt: Attempt, vendor: Vendor, run_dir: Path, options: RunOptions,
                telemetry: Telemetry | None = None) -> dict:
    """Run one attempt's process to its end and write its record. Never raises for a benchmark failure.

    Args:
        attempt: the attempt.
        vendor: the vendor.
        run_dir: the run folder.
        options: the run's options.
        telemetry: the run's telemetry (sampled from just before the process starts until it ends).

    Returns:
        The record written to ``record.json`` (a container record's keys, with ``process_request`` in place of
        ``container_request``, ``image`` and ``image_id`` None, and ``runtime`` "native").

    Raises:
        KeyboardInterrupt: after recording, when the user interrupted (so the caller stops the run).
    """
    folder = run_dir / attempt.folder
    folder.mkdir(parents=True)
    bench = attempt.benchmark
    timeout = options.timeout_s or bench.timeout_s(options.size, options.overrides.get(bench.name))
    request = process_request(attempt, vendor, run_dir, options)
    sampler = (telemetry or Telemetry([])).sampler(folder / TELEMETRY_NAME, options.telemetry_interval_s,
                                                   attempt.devices)
    started, t0 = now(), time.monotonic()
    exit, cause = Exit(code=None), None
    record = {
        "format": FORMAT_VERSION, "benchmark": bench.name, "group": bench.group, "repeat": attempt.repeat,
        "device": attempt.device_label, "plan": bench.plan, "unit": bench.unit, "weight": bench.weight,
        "size": options.size, "runtime": NATIVE, "image": None, "image_id": None, "timeout_s": timeout,
        "process_request": request.to_dict(), "reproduce": request.shell_command(), "started": started,
        "concurrent": [attempt.device_label],  # natively, attempts run one after another
    }
    write_json_atomic(folder / RECORD_NAME, {**record, "status": "running",
                                             "cause": "the host process stopped during this attempt"})
    with interrupts.scope() as stop, open(folder / LOG_NAME, "wb") as log:
        sampler.start()
        try:
            proc = subprocess.Popen(request.command, cwd=request.cwd, env={**os.environ, **request.env},
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own group: a stop reaches its workers too
        except OSError as e:
            cause = f"could not start {request.command[0]}: {e}"
        else:
            try:
                with stop.interruptible():
                    exit = _wait(proc, timeout)
            except KeyboardInterrupt:
                exit = _stop(proc)
            finally:
                _signal_group(proc, signal.SIGKILL)  # no worker outlives its attempt
        finally:
            sampler.stop()
    if cause is None:
        status, cause, rate = classify(exit, folder / EVENTS_NAME, folder / LOG_NAME, timeout)
    else:
        status, rate = "failed", None
    record.update(status=status, cause=cause, rate=rate, exit_code=exit.code, timed_out=exit.timed_out,
                  oom_killed=exit.oom_killed, wall_s=round(time.monotonic() - t0, 3), ended=now())
    record.update(batch_started=started, batch_ended=record["ended"])
    write_json_atomic(folder / RECORD_NAME, record)
    if exit.interrupted:
        raise KeyboardInterrupt
    return record


def _code(returncode: int) -> int:
    # A signal's death reads as a container's would (128 + signal: SIGKILL is 137), so the causes read the same.
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait(proc: subprocess.Popen, timeout: float | None) -> Exit:
    try:
        return Exit(code=_code(proc.wait(timeout)))
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        return Exit(code=None, timed_out=True)


def _stop(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> Exit:
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    return Exit(code=None, interrupted=True)
