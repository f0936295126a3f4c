"""Running benchmarks: one container per attempt, results through one mounted folder, every failure recorded.

A run never loses a result: each attempt's record is written atomically once its container is gone,
the manifest is rewritten at the end, and a crash, hang, OOM or Ctrl-C becomes a failed row with its
cause instead of an exception. No container outlives its attempt.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine
from milabox.errors import RunError
from milabox.execution import interrupts
from milabox.execution.attempt import now, run_attempt
from milabox.execution.plan import Attempt, RunOptions, plan_attempts
from milabox.execution.provenance import collect as collect_provenance
from milabox.execution.requests import attempt_request
from milabox.execution.telemetry import Telemetry
from milabox.images.naming import NamedImage, benchmark_tag, groups_of, require_built
from milabox.origin import host_facts
from milabox.rundir.layout import FORMAT_VERSION, MANIFEST_NAME, PROVENANCE_NAME, write_json_atomic
from milabox.stats import sem_pct_of


class RunReporter:
    """What a run tells whoever watches it; the default says nothing."""

    def attempt_started(self, index: int, total: int, attempt: Attempt) -> None: ...
    def attempt_ended(self, index: int, total: int, attempt: Attempt, record: dict) -> None: ...
    def skipped(self, benchmark: Benchmark, why: str) -> None: ...
    def planned(self, attempts: Sequence[Attempt]) -> None: ...
    def repeats_skipped(self, benchmark: Benchmark, repeats: int, sem_pct: float, skipped: int) -> None: ...


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
        "started": now(), "ended": None, "status": "running",
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
    manifest.update(ended=now(), status=status)
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    return run_dir
