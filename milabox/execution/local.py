"""Running benchmarks: one container per attempt, results through one mounted folder, every failure recorded.

A run never loses a result: each attempt's record is written atomically once its container is gone,
the manifest is rewritten at the end, and a crash, hang, OOM or Ctrl-C becomes a failed row with its
cause instead of an exception. No container outlives its attempt.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from milabox.execution.attempt import now, run_batch
from milabox.execution.plan import AUTO_FIRST_REPEATS, Attempt, RunOptions, batches, plan_attempts
from milabox.execution.provenance import collect as collect_provenance
from milabox.execution.requests import attempt_request
from milabox.execution.telemetry import Telemetry
from milabox.images.naming import NamedImage, benchmark_tag, groups_of, require_built
from milabox.origin import host_facts
from milabox.rundir.layout import FORMAT_VERSION, MANIFEST_NAME, PROVENANCE_NAME, write_json_atomic
from milabox.stats import cv_pct, repeats_for_cv, sem_pct_of


class RunReporter:
    """What a run tells whoever watches it; the default says nothing."""

    def attempt_started(self, index: int, total: int, attempt: Attempt) -> None: ...
    def attempt_ended(self, index: int, total: int, attempt: Attempt, record: dict) -> None: ...
    def skipped(self, benchmark: Benchmark, why: str) -> None: ...
    def planned(self, attempts: Sequence[Attempt]) -> None: ...
    def repeats_skipped(self, benchmark: Benchmark, repeats: int, sem_pct: float, skipped: int) -> None: ...
    def repeats_chosen(self, benchmark: Benchmark, cv_pct: float | None, repeats: int | None) -> None: ...
    def unstable(self, benchmark: Benchmark, repeat: int, retried: bool) -> None: ...


def run(engine: Engine | None, benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
        reporter: RunReporter | None = None) -> Path:
    """Run benchmarks on one vendor into a new run folder.

    Args:
        engine: the engine (None with ``options.runtime`` "native").
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
    # --runtime native (milabox.execution.native): one process per attempt; no engine (None), no images.
    if options.runtime == "native":
        from milabox.execution import native
        return native.run(benchmarks, vendor, options, reporter)
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
        # The selection's benchmarks the vendor skips (as runnable() skips them): the score's coverage names them.
        "excluded": {b.name: b.excluded_vendors[vendor.name] for b in benchmarks if not b.supports(vendor.name)},
        "devices": list(options.devices or ["all"]),
        "images": {g: {"tag": benchmark_tag(g, vendor), "id": i, "ref": r} for g, (r, i) in images.items()},
        "started": now(), "ended": None, "status": "running",
    }
    # How the run measured: --set per row, --min-seconds, --repeat auto (its choices are added per benchmark as
    # "repeat_auto": {row: {cv_pct, repeats, warning}}), --until-stable.
    manifest.update(overrides=options.overrides, min_seconds=options.min_seconds, auto_repeat=options.auto_repeat,
                    until_stable=options.until_stable)
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    # Opened once per run: a missing library or device warns once, not once per attempt.
    telemetry = Telemetry.open(vendor.telemetry, options.devices,
                               **({} if options.telemetry_interval_s > 0 else {"on_warning": lambda m: None}))
    write_json_atomic(run_dir / PROVENANCE_NAME, collect_provenance(
        engine, images={g: r for g, (r, _) in images.items()}, telemetry=telemetry, command=manifest["command"],
        attempts=[(a.folder, attempt_request(a, vendor, images[a.benchmark.group][0], run_dir, options))
                  for a in attempts],
        settings={"vendor": vendor.name, **json.loads(json.dumps(asdict(options), default=str))}))
    reporter.planned(attempts)
    with contextlib.closing(telemetry):
        status = _measure(engine, attempts, vendor, images, options, telemetry, reporter, stop, manifest)
    if stop.requested:  # also when it came while the last record was being written
        status = "interrupted"
    manifest.update(ended=now(), status=status)
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    return run_dir


def _measure(engine: Engine, attempts: Sequence[Attempt], vendor: Vendor, images: dict[str, tuple[str, str]],
             options: RunOptions, telemetry: Telemetry, reporter: RunReporter, stop: interrupts.StopRequest,
             manifest: dict) -> str:
    """Run the planned batches benchmark by benchmark, adding or skipping repeats; the run's status."""
    planned_by: dict[str, list[list[Attempt]]] = {}
    for batch in batches(attempts):
        planned_by.setdefault(batch[0].benchmark.name, []).append(batch)
    count = {"total": len(attempts), "index": 0}
    for name, planned in planned_by.items():
        bench, limit, repeat = planned[0][0].benchmark, len(planned), 0
        rates: list[float] = []  # successful attempt rates (--until-sem)
        node_rates: list[float] = []  # per repeat, the sum of its concurrent attempts' rates (--repeat auto)
        while repeat < limit:
            if stop.requested:  # a stop signal between two batches (or before the first)
                return "interrupted"
            batch = (planned[repeat] if repeat < len(planned)
                     else [dataclasses.replace(a, repeat=repeat) for a in planned[0]])
            first = count["index"] + 1
            for n, attempt in enumerate(batch):
                reporter.attempt_started(first + n, count["total"], attempt)
            records, interrupted = run_batch(engine, batch, vendor, images[bench.group], options.run_dir, options,
                                             telemetry)
            count["index"] += len(batch)
            for n, (attempt, record) in enumerate(zip(batch, records, strict=True)):
                reporter.attempt_ended(first + n, count["total"], attempt, record)
            if interrupted:
                return "interrupted"
            good = [r["rate"] for r in records if r.get("status") == "ok" and r.get("rate")]
            rates += good
            if len(good) == len(records):
                node_rates.append(sum(good))
            repeat += 1
            if options.until_stable:
                unstable = any("unstable" in r for r in records)
                retry = unstable and repeat < options.repeat
                if unstable:
                    reporter.unstable(bench, repeat - 1, retry)
                if retry:
                    limit, count["total"] = limit + 1, count["total"] + len(batch)
                continue
            if options.auto_repeat and repeat == AUTO_FIRST_REPEATS:
                cv = cv_pct(node_rates) if len(node_rates) >= 2 else None
                chosen = repeats_for_cv(cv) if cv is not None else None
                choice: dict[str, object] = {"cv_pct": cv, "repeats": chosen or repeat}
                if chosen is None:
                    choice["warning"] = (f"{name}: run-to-run CV {cv:.3g}% after {repeat} repeats: this figure "
                                         "cannot be trusted" if cv is not None else
                                         f"{name}: fewer than 2 of {repeat} repeats succeeded: no CV to judge by")
                manifest.setdefault("repeat_auto", {})[name] = choice
                write_json_atomic(options.run_dir / MANIFEST_NAME, manifest)
                reporter.repeats_chosen(bench, cv, chosen)
                if chosen is not None and chosen > limit:
                    count["total"] += (chosen - limit) * len(batch)
                    limit = chosen
            if options.until_sem_pct is not None and repeat < limit:
                sem = sem_pct_of(rates)
                if sem is not None and sem < options.until_sem_pct:
                    skipped = (limit - repeat) * len(batch)
                    count["total"] -= skipped
                    reporter.repeats_skipped(bench, repeat, sem, skipped)
                    break
    return "complete"
