"""Running benchmarks: one container per attempt, results through one mounted folder, every failure recorded.

A run never loses a result: each attempt's record is written atomically once its container is gone,
the manifest is rewritten at the end, and a crash, hang, OOM or Ctrl-C becomes a failed row with its
cause instead of an exception. No container outlives its attempt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import CONTAINER_LABEL, BindMount, ContainerRequest, Engine, Exit
from milabox.errors import ConfigError, EngineError, RunError
from milabox.execution import interrupts
from milabox.execution.multinode import NodeSpec, judge, node_request
from milabox.execution.provenance import collect as collect_provenance
from milabox.execution.telemetry import Telemetry
from milabox.images.naming import NamedImage, benchmark_tag, groups_of, require_built, runnable
from milabox.origin import host_facts
from milabox.rundir.layout import (
    EVENTS_NAME,
    FORMAT_VERSION,
    LOG_NAME,
    MANIFEST_NAME,
    PROVENANCE_NAME,
    RECORD_NAME,
    TELEMETRY_NAME,
    attempt_folder,
    write_json_atomic,
)
from milabox.rundir.outcome import classify
from milabox.stats import sem_pct_of

RESULTS_MOUNT = "/results"


@dataclass(frozen=True)
class RunOptions:
    """How to run a selection of benchmarks.

    Attributes:
        size: ``smoke`` (seconds, any CPU) or ``full`` (sized for an 80 GB accelerator).
        repeat: attempts per benchmark and device (default 1).
        until_sem_pct: stop repeating a benchmark once the sem% of its attempt rates is below this (at least
            two successful attempts, at most ``repeat`` repeats); None: always ``repeat`` repeats.
        timeout_s: wall-clock limit per container; None: each benchmark's own (its size's ``timeout_s``).
        devices: device ids (``--devices 0,1``); None: one attempt with every device of the vendor.
        run_dir: the run folder to create; it must not exist or be empty.
        environment: extra variables for every container (e.g. ``OMP_NUM_THREADS``).
        memory: memory limit per container, e.g. ``64g`` (empty: none).
        command: the command line, recorded in the manifest.
        nodes: this node's place in a multi-node run (``--nodes``, or Slurm's variables); None: one node.
        telemetry_interval_s: seconds between telemetry samples while a container runs; 0: no sampling.
    """

    size: str = "smoke"
    repeat: int = 1
    until_sem_pct: float | None = None
    timeout_s: float | None = None
    devices: tuple[str, ...] | None = None
    run_dir: Path = Path("runs")
    environment: dict[str, str] = field(default_factory=dict)
    memory: str = ""
    command: tuple[str, ...] = ()
    nodes: NodeSpec | None = None
    telemetry_interval_s: float = 1.0


@dataclass(frozen=True)
class Attempt:
    """One container to run: a benchmark, a repeat, a device set."""

    benchmark: Benchmark
    repeat: int
    devices: tuple[str, ...]

    @property
    def device_label(self) -> str:
        return "all" if not self.devices else "+".join(self.devices)

    @property
    def folder(self) -> str:
        return attempt_folder(self.benchmark.name, self.repeat, self.device_label)


class RunReporter:
    """What a run tells whoever watches it; the default says nothing."""

    def attempt_started(self, index: int, total: int, attempt: Attempt) -> None: ...
    def attempt_ended(self, index: int, total: int, attempt: Attempt, record: dict) -> None: ...
    def skipped(self, benchmark: Benchmark, why: str) -> None: ...
    def planned(self, attempts: Sequence[Attempt]) -> None: ...
    def repeats_skipped(self, benchmark: Benchmark, repeats: int, sem_pct: float, skipped: int) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def plan_attempts(benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
                  on_skip: Callable[[Benchmark, str], None] = lambda b, why: None) -> list[Attempt]:
    """Expand benchmarks into attempts: repeats × devices (per_device) or repeats (all_devices).

    Raises:
        ConfigError: devices were selected for a vendor that has none to select, or until_sem_pct is not > 0.
    """
    if options.devices and vendor.device_selection == "none":
        raise ConfigError(f"--devices: vendor {vendor.name} has no selectable devices; leave --devices out")
    if options.until_sem_pct is not None and not options.until_sem_pct > 0:
        raise ConfigError(f"--until-sem: must be a percentage > 0, not {options.until_sem_pct!r}")
    attempts = []
    for bench in runnable(benchmarks, vendor, on_skip):
        device_sets: list[tuple[str, ...]] = [()]
        if options.devices:
            device_sets = ([(d,) for d in options.devices] if bench.plan == "per_device"
                           else [tuple(options.devices)])
        for repeat in range(options.repeat):
            attempts.extend(Attempt(bench, repeat, devs) for devs in device_sets)
    return attempts


def _device_owner_gids(paths: Sequence[str]) -> list[str]:
    gids: set[int] = set()
    for path in paths:
        p = Path(path)
        nodes = [p, *p.iterdir()] if p.is_dir() else [p]
        for node in nodes:
            try:
                if not node.is_dir():
                    gids.add(node.stat().st_gid)
            except OSError:
                continue
    return [str(g) for g in sorted(gids) if g != 0]


def container_request(attempt: Attempt, vendor: Vendor, image: str, results_dir: Path, size: str,
                      environment: dict[str, str] | None = None, run_name: str = "",
                      memory: str = "") -> ContainerRequest:
    """The exact container request for one attempt: passthrough from the vendor's data, nothing else writable.

    Args:
        attempt: benchmark, repeat and devices.
        vendor: the vendor (its passthrough and device selection).
        image: image reference.
        results_dir: host folder mounted read-write at ``/results`` (the only writable host mount).
        size: ``smoke`` or ``full``.
        environment: extra variables.
        run_name: the run folder's name, recorded as a label.
        memory: memory limit (empty: none).

    Returns:
        The request.
    """
    bench, pt = attempt.benchmark, vendor.passthrough
    env = {"MILABOX_CONFIG": json.dumps(bench.config(size), sort_keys=True), "MILABOX_RESULTS": RESULTS_MOUNT,
           "MILABOX_BENCHMARK": bench.name, "HOME": "/tmp", **(environment or {})}
    if attempt.devices and vendor.device_selection == "env":
        env[vendor.device_env] = ",".join(attempt.devices)
    groups = list(pt.group_add)
    if pt.group_add_device_owners:
        groups += [g for g in _device_owner_gids(pt.devices) if g not in groups]
    mounts = (BindMount(str(results_dir.resolve()), RESULTS_MOUNT, read_only=False),
              # Only where the host has them: a bind of a missing path is refused by the engine.
              *(BindMount(src, dst, read_only=True) for src, dst in pt.volumes if os.path.exists(src)))
    return ContainerRequest(
        image=image, environment=env, mounts=mounts, user=f"{os.getuid()}:{os.getgid()}", network_mode="none",
        devices=pt.devices, gpu_request=pt.gpu_request,
        gpu_ids=attempt.devices if vendor.device_selection == "device_requests" else (),
        group_add=tuple(groups), security_opt=pt.security_opt, ipc_mode=pt.ipc_mode, shm_size=pt.shm_size,
        labels={CONTAINER_LABEL: bench.name, "milabox.run": run_name, "milabox.attempt": attempt.folder},
        memory=memory,
    )


def attempt_request(attempt: Attempt, vendor: Vendor, image: str, run_dir: Path, options: RunOptions) -> ContainerRequest:
    """The container request of one attempt of a run (what :func:`run_attempt` creates, and provenance records).

    Args:
        attempt: the attempt.
        vendor: the vendor.
        image: image reference.
        run_dir: the run folder (the attempt's folder is mounted as ``/results``).
        options: the run's options.

    Returns:
        The request.
    """
    request = container_request(attempt, vendor, image, run_dir / attempt.folder, options.size, options.environment,
                                run_dir.name, options.memory)
    if options.nodes is not None:  # one container per node, joined over the host network
        request = node_request(request, options.nodes, vendor, attempt.devices)
    return request


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
    started, t0 = _now(), time.monotonic()
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
                  oom_killed=exit.oom_killed, wall_s=round(time.monotonic() - t0, 3), ended=_now())
    write_json_atomic(folder / RECORD_NAME, record)
    if exit.interrupted:
        raise KeyboardInterrupt
    return record


def run(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
        reporter: RunReporter | None = None) -> Path:
    """Run benchmarks on one vendor into a new run folder.

    Args:
        engine: the engine.
        benchmarks: the selection.
        vendor: the vendor.
        options: size, repeats, timeout, devices, run folder.
        reporter: receives progress.

    Returns:
        The run folder (it holds the manifest and one record per attempt, failed ones included).

    Raises:
        RunError: nothing to run, an image is missing, or the run folder is not empty — checked before
            anything is written.
        ConfigError: invalid options.
    """
    with interrupts.scope() as stop:
        return _run(engine, benchmarks, vendor, options, reporter or RunReporter(), stop)


def _run(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
         reporter: RunReporter, stop: interrupts.StopRequest) -> Path:
    attempts = plan_attempts(benchmarks, vendor, options, reporter.skipped)
    if not attempts:
        raise RunError(f"nothing to run: none of the selected benchmarks runs on vendor {vendor.name}")
    images: dict[str, tuple[str, str]] = {}
    for group in groups_of([a.benchmark for a in attempts]):
        tag = benchmark_tag(group, vendor)
        info = require_built(engine, NamedImage(group, tag), vendor)
        # After a push or pull the image has a registry digest: start and record it by that exact reference.
        images[group] = (info.digest_ref or tag, info.id)
    run_dir = options.run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"run folder {run_dir} already holds results; choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_VERSION, **host_facts(), "vendor": vendor.name, "size": options.size,
        "command": list(options.command or sys.argv), "benchmarks": list(dict.fromkeys(a.benchmark.name
                                                                                       for a in attempts)),
        "repeat": options.repeat, "until_sem_pct": options.until_sem_pct,
        "devices": list(options.devices or ["all"]),
        "images": {g: {"tag": benchmark_tag(g, vendor), "id": i, "ref": r} for g, (r, i) in images.items()},
        "started": _now(), "ended": None, "status": "running",
    }
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    # Opened once per run: a missing library or device warns once, not once per attempt.
    telemetry = Telemetry.open(vendor.telemetry, options.devices,
                               **({} if options.telemetry_interval_s > 0 else {"on_warning": lambda m: None}))
    write_json_atomic(run_dir / PROVENANCE_NAME, collect_provenance(
        engine, images={g: r for g, (r, _) in images.items()}, telemetry=telemetry, command=manifest["command"],
        attempts=[(a.folder, attempt_request(a, vendor, images[a.benchmark.group][0], run_dir, options))
                  for a in attempts],
        settings={"vendor": vendor.name, **json.loads(json.dumps(asdict(options), default=str))}))
    status = "complete"
    rates: dict[str, list[float]] = {}  # successful attempt rates so far, per benchmark (--until-sem)
    settled: set[str] = set()  # benchmarks whose sem% went below --until-sem: their other repeats are skipped
    total, index = len(attempts), 0
    reporter.planned(attempts)
    with contextlib.closing(telemetry):
        for position, attempt in enumerate(attempts):
            name = attempt.benchmark.name
            if stop.requested:  # a stop signal between two attempts (or before the first)
                status = "interrupted"
                break
            if name in settled:
                continue
            index += 1
            reporter.attempt_started(index, total, attempt)
            try:
                record = run_attempt(engine, attempt, vendor, images[attempt.benchmark.group], run_dir, options,
                                     telemetry)
            except KeyboardInterrupt:
                status = "interrupted"
                reporter.attempt_ended(index, total, attempt, {"status": "interrupted"})
                break
            reporter.attempt_ended(index, total, attempt, record)
            if record.get("status") == "ok" and record.get("rate"):
                rates.setdefault(name, []).append(record["rate"])
            rest = [a for a in attempts[position + 1:] if a.benchmark.name == name]
            # Judge only once every device of this repeat has run, and only if repeats remain.
            if options.until_sem_pct is None or not rest or rest[0].repeat == attempt.repeat:
                continue
            sem = sem_pct_of(rates.get(name, []))
            if sem is not None and sem < options.until_sem_pct:
                settled.add(name)
                total -= len(rest)
                reporter.repeats_skipped(attempt.benchmark, attempt.repeat + 1, sem, len(rest))
    if stop.requested:  # also when it came while the last record was being written
        status = "interrupted"
    manifest.update(ended=_now(), status=status)
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    return run_dir
