"""Attempts to their end: containers created, started, waited for and removed, records written.

The attempts of one batch (a benchmark's repeat on every device) run together: every container is created, then
every one started, then all are waited for at once (one thread per blocking wait; the main thread waits in an
interruptible section), so the node's shared power, thermal and host-CPU limits are measured. A Ctrl-C stops
every container of the batch; each is recorded as interrupted and removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from milabox import stats
from milabox.definitions.vendors import Vendor
from milabox.engine import LABEL_PREFIX, Container, ContainerRequest, Engine, Exit
from milabox.errors import EngineError, EngineLost
from milabox.execution import interrupts
from milabox.execution.multinode import judge
from milabox.execution.plan import Attempt, RunOptions
from milabox.execution.requests import attempt_request
from milabox.execution.telemetry import Telemetry
from milabox.rundir.layout import EVENTS_NAME, FORMAT_VERSION, LOG_NAME, RECORD_NAME, TELEMETRY_NAME, write_json_atomic
from milabox.rundir.outcome import classify
from milabox.rundir.read import read_events

#: The label that ties every container of a run to it (its value: the manifest's ``run_id``), and the one that
#: names its run folder: the startup cleanup finds a dead run's leftovers by them.
RUN_ID_LABEL = LABEL_PREFIX + "run-id"
RUN_DIR_LABEL = LABEL_PREFIX + "run-dir"
#: The start of the cause of an attempt whose engine was lost (the run then ends, resumable).
ENGINE_LOST = "engine lost"
#: Seconds between the main thread's checks that a batch's waits have ended (it sleeps in between).
_JOIN_POLL_S = 0.2


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
    records, interrupted = run_batch(engine, [attempt], vendor, image, run_dir, options, telemetry)
    if interrupted:
        raise KeyboardInterrupt
    return records[0]


@dataclass
class _Live:
    """One attempt of a batch while it runs."""

    attempt: Attempt
    folder: Path
    request: ContainerRequest
    record: dict[str, Any]
    timeout: float
    sampler: Any
    container: Container | None = None
    log: IO[bytes] | None = None
    exit: Exit = field(default_factory=lambda: Exit(code=None))
    cause: str | None = None
    lost: bool = False

    def lose(self, error: EngineLost) -> None:
        self.cause, self.lost = f"{ENGINE_LOST}: {error}", True


def labelled(request: ContainerRequest, run_dir: Path, options: RunOptions) -> ContainerRequest:
    """The request with the run's labels (``RUN_ID_LABEL``, ``RUN_DIR_LABEL``) added.

    Args:
        request: an attempt's request.
        run_dir: the run folder.
        options: the run's options (its ``run_id``).

    Returns:
        The labelled request (the same request without a run id).
    """
    if not options.run_id:
        return request
    return dataclasses.replace(request, labels={**request.labels, RUN_ID_LABEL: options.run_id,
                                                RUN_DIR_LABEL: str(run_dir.resolve())})


def _prepare(attempt: Attempt, vendor: Vendor, image: tuple[str, str], run_dir: Path, options: RunOptions,
             telemetry: Telemetry | None, batch: Sequence[Attempt]) -> _Live:
    folder = run_dir / attempt.folder
    folder.mkdir(parents=True)
    bench = attempt.benchmark
    timeout = options.timeout_s or bench.timeout_s(options.size, options.overrides.get(bench.name))
    request = labelled(attempt_request(attempt, vendor, image[0], run_dir, options), run_dir, options)
    sampler = (telemetry or Telemetry([])).sampler(folder / TELEMETRY_NAME, options.telemetry_interval_s,
                                                   attempt.devices)
    record = {
        "format": FORMAT_VERSION, "benchmark": bench.name, "group": bench.group, "repeat": attempt.repeat,
        "device": attempt.device_label, "plan": bench.plan, "unit": bench.unit, "weight": bench.weight,
        "size": options.size, "image": image[0], "image_id": image[1], "timeout_s": timeout,
        "container_request": request.to_dict(), "reproduce": request.docker_run_command(), "started": now(),
        # The attempts that ran at the same time as this one (its own included): the node's rate is their sum.
        "concurrent": [a.device_label for a in batch],
    }
    if options.nodes is not None:
        record["multinode"] = options.nodes.to_dict()
    # Written first and replaced at the end: if the host itself dies, the attempt still reads as failed.
    write_json_atomic(folder / RECORD_NAME, {**record, "status": "running",
                                             "cause": "the host process stopped during this attempt"})
    return _Live(attempt, folder, request, record, timeout, sampler)


def _wait(live: _Live) -> None:
    try:
        live.exit = live.container.wait(live.timeout)  # type: ignore[union-attr]
    except EngineLost as e:
        live.lose(e)
    except EngineError as e:
        live.cause = str(e)
    except Exception as e:  # noqa: BLE001 - a thread's error must become the attempt's cause, not vanish
        live.cause = f"the engine failed while the container ran: {type(e).__name__}: {e}"


def _stop_all(lives: Sequence[_Live]) -> None:
    """Stop every container at once (each stop waits its grace period), then record them as interrupted."""
    exits: dict[int, Exit] = {}
    threads = [threading.Thread(target=lambda n=n, live=live: exits.__setitem__(n, live.container.stop()),
                                daemon=True) for n, live in enumerate(lives)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, live in enumerate(lives):
        live.exit = exits.get(n, Exit(code=None, interrupted=True))


def _wait_all(lives: Sequence[_Live], stop: interrupts.StopRequest) -> bool:
    """Wait for every started container; True when the user interrupted (then every one was stopped)."""
    threads = [threading.Thread(target=_wait, args=(live,), daemon=True) for live in lives]
    for t in threads:
        t.start()
    try:
        with stop.interruptible():  # a stop signal here (or one that came already) raises KeyboardInterrupt
            for t in threads:
                while t.is_alive():
                    t.join(_JOIN_POLL_S)
    except KeyboardInterrupt:
        _stop_all(lives)
        for t in threads:
            t.join()  # each wait returns once its container is stopped
        for live in lives:
            live.exit, live.cause = Exit(code=None, interrupted=True), None
        return True
    return any(live.exit.interrupted for live in lives)


def _unstable(folder: Path) -> dict | None:
    if not (folder / EVENTS_NAME).exists():
        return None
    rates = [e.data["value"] for e in read_events(folder / EVENTS_NAME)[0]
             if e.kind == "rate" and isinstance(e.data.get("value"), (int, float))]
    phase = stats.slow_phase(rates)
    return None if phase is None else {"steps": list(phase)}


def _finish(live: _Live, options: RunOptions, batch_started: str, batch_ended: str, t0: float) -> dict:
    exit, status, cause, rate = live.exit, "failed", live.cause, None
    if cause is None:
        status, cause, rate = classify(exit, live.folder / EVENTS_NAME, live.folder / LOG_NAME, live.timeout)
        if options.nodes is not None:  # only node rank 0 reports the rate
            status, cause, rate = judge(options.nodes, exit, status, cause, rate)
    record = live.record
    record.update(status=status, cause=cause, rate=rate, exit_code=exit.code, timed_out=exit.timed_out,
                  oom_killed=exit.oom_killed, wall_s=round(time.monotonic() - t0, 3), ended=now(),
                  batch_started=batch_started, batch_ended=batch_ended)
    if live.lost:  # the run ends here; --resume retries it
        record["engine_lost"] = True
    if status == "ok" and (phase := _unstable(live.folder)) is not None:
        record["unstable"] = phase
    write_json_atomic(live.folder / RECORD_NAME, record)
    return record


def run_batch(engine: Engine, batch: Sequence[Attempt], vendor: Vendor, image: tuple[str, str], run_dir: Path,
              options: RunOptions, telemetry: Telemetry | None = None) -> tuple[list[dict], bool]:
    """Run attempts together (one container each): create all, start all, wait for all; write every record.

    Never raises for a benchmark or engine failure: each becomes its attempt's record. Each attempt's telemetry
    sampler samples only its own devices.

    Args:
        engine: the engine.
        batch: the attempts (one benchmark's repeat, one per device).
        vendor: the vendor.
        image: (reference, id) of the benchmark's image.
        run_dir: the run folder.
        options: the run's options.
        telemetry: the run's telemetry (None: no sampling).

    Returns:
        (the records, in the batch's order; whether the user interrupted — then every container was stopped and
        recorded as interrupted, and the caller stops the run). A record with ``engine_lost`` true: the engine
        was lost during the batch (the caller stops the run too).
    """
    lives = [_prepare(a, vendor, image, run_dir, options, telemetry, batch) for a in batch]
    t0, interrupted = time.monotonic(), False
    # Inside interrupts.scope() a stop signal raises only while the containers run: never while they are being
    # created or removed, or while a record is written.
    with interrupts.scope() as stop, contextlib.ExitStack() as held:
        for live in lives:
            try:
                live.log = held.enter_context(open(live.folder / LOG_NAME, "wb"))
                live.container = held.enter_context(engine.container(live.request))
            except EngineLost as e:
                live.lose(e)
            except EngineError as e:  # the engine refused to create it
                live.cause = str(e)
        batch_started = now()
        started = []
        try:
            for live in lives:
                if live.container is None:
                    continue
                live.sampler.start()
                try:
                    live.container.start(live.log)
                    started.append(live)
                except EngineLost as e:
                    live.lose(e)
                except EngineError as e:
                    live.cause = str(e)
            interrupted = _wait_all(started, stop) if started else stop.requested
        finally:
            for live in lives:
                live.sampler.stop()  # no sampling thread outlives its attempt
        batch_ended = now()
    return [_finish(live, options, batch_started, batch_ended, t0) for live in lives], interrupted
