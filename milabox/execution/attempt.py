"""One attempt to its end: its container created, started, waited for and removed, its record written."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from milabox.definitions.vendors import Vendor
from milabox.engine import Engine, Exit
from milabox.errors import EngineError
from milabox.execution import interrupts
from milabox.execution.multinode import judge
from milabox.execution.plan import Attempt, RunOptions
from milabox.execution.requests import attempt_request
from milabox.execution.telemetry import Telemetry
from milabox.rundir.layout import EVENTS_NAME, FORMAT_VERSION, LOG_NAME, RECORD_NAME, TELEMETRY_NAME, write_json_atomic
from milabox.rundir.outcome import classify


def now() -> str:
    """The current UTC time as records and manifests write it (ISO 8601, seconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_attempt(engine: Engine, attempt: Attempt, vendor: Vendor, image: tuple[str, str], run_dir: Path,
                options: RunOptions, telemetry: Telemetry | None = None) -> dict:
    """Run one container to its end and write its record. Never raises for a benchmark failure.

    With ``telemetry``, its sampler writes ``telemetry.jsonl`` from just before the container starts until it ends.

    Returns:
        The record written to ``record.json``.

    Raises:
        KeyboardInterrupt: after recording, when the user interrupted (so the caller stops the run).
    """
    # Inside interrupts.scope() a stop signal raises only while the container runs: never while it is being
    # created or removed, or while a record is written.
    folder = run_dir / attempt.folder
    folder.mkdir(parents=True)
    bench = attempt.benchmark
    timeout = options.timeout_s or bench.timeout_s(options.size)
    request = attempt_request(attempt, vendor, image[0], run_dir, options)
    sampler = (telemetry or Telemetry([])).sampler(folder / TELEMETRY_NAME, options.telemetry_interval_s,
                                                   attempt.devices)
    started, t0 = now(), time.monotonic()
    exit, status, cause, rate = Exit(code=None), "failed", None, None
    record = {
        "format": FORMAT_VERSION, "benchmark": bench.name, "group": bench.group, "repeat": attempt.repeat,
        "device": attempt.device_label, "plan": bench.plan, "unit": bench.unit, "weight": bench.weight,
        "size": options.size, "image": image[0], "image_id": image[1], "timeout_s": timeout,
        "container_request": request.to_dict(), "reproduce": request.docker_run_command(), "started": started,
    }
    if options.nodes is not None:
        record["multinode"] = options.nodes.to_dict()
    # Written first and replaced at the end: if the host itself dies, the attempt still reads as failed.
    write_json_atomic(folder / RECORD_NAME, {**record, "status": "running",
                                             "cause": "the host process stopped during this attempt"})
    with interrupts.scope() as stop:
        try:
            with open(folder / LOG_NAME, "wb") as log, engine.container(request) as container:
                try:
                    sampler.start()
                    container.start(log)
                    with stop.interruptible():
                        exit = container.wait(timeout)  # a stop signal here: the container is stopped
                except EngineError as e:
                    cause = str(e)
                except KeyboardInterrupt:  # the stop came before the wait began
                    exit = container.stop()
                finally:
                    sampler.stop()  # no sampling thread outlives its attempt
        except EngineError as e:  # the engine refused to create it
            cause = str(e)
    if cause is None:
        status, cause, rate = classify(exit, folder / EVENTS_NAME, folder / LOG_NAME, timeout)
        if options.nodes is not None:  # only node rank 0 reports the rate
            status, cause, rate = judge(options.nodes, exit, status, cause, rate)
    record.update(status=status, cause=cause, rate=rate, exit_code=exit.code, timed_out=exit.timed_out,
                  oom_killed=exit.oom_killed, wall_s=round(time.monotonic() - t0, 3), ended=now())
    write_json_atomic(folder / RECORD_NAME, record)
    if exit.interrupted:
        raise KeyboardInterrupt
    return record


