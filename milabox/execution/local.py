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
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine
from milabox.errors import ResultsError, RunError
from milabox.execution import interrupts
from milabox.execution.attempt import labelled, now, run_batch
from milabox.execution.leftovers import owner
from milabox.execution.plan import (
    AUTO_FIRST_REPEATS,
    Attempt,
    RunOptions,
    batches,
    check_resumable,
    plan_attempts,
    resume_attempts,
)
from milabox.execution.provenance import collect as collect_provenance
from milabox.execution.provenance import collect_native
from milabox.execution.requests import attempt_request
from milabox.execution.telemetry import Telemetry
from milabox.images.naming import NamedImage, benchmark_tag, groups_of, require_built
from milabox.origin import host_facts
from milabox.rundir.layout import (
    ATTEMPT_DIR_RE,
    FORMAT_VERSION,
    IDLE_NAME,
    MANIFEST_NAME,
    PROVENANCE_NAME,
    RECORD_NAME,
    write_json_atomic,
)
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
    """Run benchmarks on one vendor into a new run folder (or, with ``options.resume``, finish an earlier run).

    One loop for both runtimes (repeats, ``--until-sem``/``--until-stable``/``--repeat auto``, excluded rows,
    interrupts, telemetry, records, manifest); only the attempt runner differs: docker runs a batch's attempts as
    concurrent containers (:func:`milabox.execution.attempt.run_batch`), native as processes one after another
    (:func:`milabox.execution.native.run_batch`).

    Args:
        engine: the engine (None with ``options.runtime`` "native").
        benchmarks: the selection.
        vendor: the vendor.
        options: size, repeats, timeout, devices, run folder.
        reporter: receives progress.

    Returns:
        The run folder (it holds the manifest and one record per attempt, failed ones included). Its manifest's
        status is ``complete``, ``interrupted`` or ``engine-lost`` (the engine stopped answering: ``--resume``).

    Raises:
        RunError: nothing to run, an image is missing, or the run folder is not empty (not resuming) — checked
            before anything is written.
        ConfigError: invalid options, or (resuming) a setup that differs from the run's.
        ResultsError: resuming a folder with no readable manifest.
    """
    if options.runtime == "native":
        from milabox.execution import native
        native.check_options(options)
    options = dataclasses.replace(options, run_id=options.run_id or uuid.uuid4().hex[:16])
    with interrupts.scope() as stop:
        return _run(engine, benchmarks, vendor, options, reporter or RunReporter(), stop)


def _runner(engine: Engine | None, vendor: Vendor, options: RunOptions, images: dict[str, tuple[str, str]]):
    """The attempt runner of the runtime: (batch, telemetry) -> (records, interrupted)."""
    if options.runtime == "native":
        from milabox.execution import native
        return lambda batch, telemetry: native.run_batch(batch, vendor, options.run_dir, options, telemetry)
    return lambda batch, telemetry: run_batch(engine, batch, vendor, images[batch[0].benchmark.group],
                                              options.run_dir, options, telemetry)


def _provenance(engine: Engine | None, vendor: Vendor, options: RunOptions, images: dict[str, tuple[str, str]],
                attempts: Sequence[Attempt], telemetry: Telemetry, command: list[str]) -> dict:
    settings = {"vendor": vendor.name, **json.loads(json.dumps(asdict(options), default=str))}
    if options.runtime == "native":
        from milabox.execution import native
        return collect_native(telemetry=telemetry, command=command, settings=settings, attempts=[
            (a.folder, native.process_request(a, vendor, options.run_dir, options)) for a in attempts])
    return collect_provenance(
        engine, images={g: r for g, (r, _) in images.items()}, telemetry=telemetry, command=command,
        attempts=[(a.folder, labelled(attempt_request(a, vendor, images[a.benchmark.group][0], options.run_dir,
                                                      options), options.run_dir, options)) for a in attempts],
        settings=settings)


def _records(run_dir: Path) -> dict[str, dict]:
    """Every attempt folder's record (an unreadable one reads as failed), for resuming."""
    found: dict[str, dict] = {}
    for path in sorted(run_dir.glob(f"*/*/{RECORD_NAME}")):
        m = ATTEMPT_DIR_RE.match(path.parent.name)
        if not m:
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict):
            record = {"status": "failed"}
        found[f"{path.parent.parent.name}/{path.parent.name}"] = {
            "benchmark": path.parent.parent.name, "repeat": int(m.group(1)), "device": m.group(2), **record}
    return found


def _run(engine: Engine | None, benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
         reporter: RunReporter, stop: interrupts.StopRequest) -> Path:
    skipped: dict[str, str] = {}

    def skip(bench: Benchmark, why: str) -> None:
        skipped[bench.name] = why
        reporter.skipped(bench, why)

    attempts = plan_attempts(benchmarks, vendor, options, skip)
    if not attempts:
        raise RunError(f"nothing to run: none of the selected benchmarks runs on vendor {vendor.name} with this "
                       f"run's devices and nodes ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    images: dict[str, tuple[str, str]] = {}
    for group in groups_of([a.benchmark for a in attempts]) if options.runtime != "native" else ():
        tag = benchmark_tag(group, vendor)
        info = require_built(engine, NamedImage(group, tag), vendor)
        # After a push or pull the image has a registry digest: start and record it by that exact reference.
        images[group] = (info.digest_ref or tag, info.id)
    run_dir = options.run_dir
    command = list(options.command or sys.argv)
    manifest = {
        "format": FORMAT_VERSION, **host_facts(), "vendor": vendor.name, "size": options.size,
        "runtime": options.runtime, "command": command,
        "benchmarks": list(dict.fromkeys(a.benchmark.name for a in attempts)),
        "repeat": options.repeat, "until_sem_pct": options.until_sem_pct,
        # The selection's benchmarks this run skips and why (the vendor excludes them, or they need more devices
        # or nodes than the run has): the score's coverage names them.
        "excluded": skipped,
        "devices": list(options.devices or ["all"]),
        "images": {g: {"tag": benchmark_tag(g, vendor), "id": i, "ref": r} for g, (r, i) in images.items()},
        "started": now(), "ended": None, "status": "running",
        # Who runs it: the startup cleanup tells a dead run's leftover containers (labelled with run_id) by these.
        "run_id": options.run_id, **owner(),
    }
    # How the run measured: --set per row, --min-seconds, --repeat auto (its choices are added per benchmark as
    # "repeat_auto": {row: {cv_pct, repeats, warning}}), --until-stable.
    manifest.update(overrides=options.overrides, min_seconds=options.min_seconds, auto_repeat=options.auto_repeat,
                    until_stable=options.until_stable)
    superseded: dict[str, str] = {}
    if options.resume:
        manifest, attempts, superseded = _resumed(manifest, attempts, options)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"run folder {run_dir} already holds results; choose another --run-dir or --resume it")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    # Opened once per run: a missing library or device warns once, not once per attempt.
    telemetry = Telemetry.open(vendor.telemetry, options.devices,
                               **({} if options.telemetry_interval_s > 0 else {"on_warning": lambda m: None}))
    if not options.resume:  # a resumed run keeps the provenance of its first start
        write_json_atomic(run_dir / PROVENANCE_NAME,
                          _provenance(engine, vendor, options, images, attempts, telemetry, command))
    reporter.planned(attempts)
    measuring = options if not options.resume else dataclasses.replace(  # a resume runs exactly what is missing
        options, until_sem_pct=None, auto_repeat=False, until_stable=False)
    with contextlib.closing(telemetry):
        # The devices at rest first (a few seconds; kept from the first start on --resume): energy above idle.
        telemetry.sample_idle(run_dir / IDLE_NAME, interval_s=options.telemetry_interval_s)
        status = (_measure(_runner(engine, vendor, options, images), attempts, measuring, telemetry, reporter,
                           stop, manifest, superseded) if attempts else "complete")
    if stop.requested and status != "engine-lost":  # also when it came while the last record was being written
        status = "interrupted"
    manifest.update(ended=now(), status=status)
    if options.resume:
        manifest["resumed"][-1]["ended"] = manifest["ended"]
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    return run_dir


def _resumed(fresh: dict, planned: list[Attempt], options: RunOptions) -> tuple[dict, list[Attempt], dict[str, str]]:
    """The manifest of the run being resumed (checked against ``fresh``), what it still needs, the retries."""
    path = options.run_dir / MANIFEST_NAME
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ResultsError(f"--resume: {path}: no readable manifest ({type(e).__name__}); resume a run folder "
                           "that milabox run made") from None
    check_resumable(recorded, fresh, path)
    records = _records(options.run_dir)
    sem_done = {name for name in fresh["benchmarks"] if options.until_sem_pct is not None and (
        (sem := sem_pct_of([r["rate"] for r in records.values() if r.get("benchmark") == name
                            and r.get("status") == "ok" and r.get("rate")])) is not None
        and sem < options.until_sem_pct)}
    chosen = {n: c.get("repeats") for n, c in (recorded.get("repeat_auto") or {}).items()}
    planned = list(planned) + [dataclasses.replace(a, repeat=r) for a in planned if a.repeat == 0
                               for r in range(AUTO_FIRST_REPEATS, chosen.get(a.benchmark.name) or 0)]
    todo, superseded = resume_attempts(planned, records, lambda name: name in sem_done)
    resumed = [*recorded.get("resumed", []), {"started": fresh["started"], "ended": None,
                                              "command": fresh["command"], "attempts": [a.folder for a in todo]}]
    recorded.update(status="running", ended=None, run_id=fresh["run_id"], resumed=resumed,
                    **{k: fresh[k] for k in ("host", "pid", "pid_started")})
    return recorded, todo, superseded


def _supersede(run_dir: Path, records: Sequence[dict], batch: Sequence[Attempt], superseded: dict[str, str]) -> None:
    """Link each retry and the attempt it replaces (the report counts the retry, not both)."""
    for attempt, record in zip(batch, records, strict=False):
        old = superseded.get(attempt.folder)
        if old is None:
            continue
        record["retry_of"] = old
        write_json_atomic(run_dir / attempt.folder / RECORD_NAME, record)
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads((run_dir / old / RECORD_NAME).read_text())
            write_json_atomic(run_dir / old / RECORD_NAME, {**previous, "superseded_by": attempt.folder})


def _measure(runner, attempts: Sequence[Attempt], options: RunOptions, telemetry: Telemetry,
             reporter: RunReporter, stop: interrupts.StopRequest, manifest: dict, superseded: dict[str, str]) -> str:
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
            records, interrupted = runner(batch, telemetry)
            _supersede(options.run_dir, records, batch, superseded)
            count["index"] += len(batch)
            for n, (attempt, record) in enumerate(zip(batch, records, strict=False)):
                reporter.attempt_ended(first + n, count["total"], attempt, record)
            if any(r.get("engine_lost") for r in records):
                return "engine-lost"
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
