"""Results of a plain ``docker run IMAGE run ROW`` (no milabox at the vendor's site) turned into a run folder.

Such a folder holds the attempt's ``events.jsonl`` (and whatever else the user put beside it). Its ``start``
event names the benchmark, size and vendor; its ``end`` event says whether the benchmark finished. Adopting it
writes the manifest and record milabox itself would have written, with the same outcome rules
(:func:`milabox.rundir.outcome.classify`), so report and compare read it like a local run, and
``milabox results pack`` can carry it on.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from milabox.definitions.benchmarks import all_benchmarks
from milabox.engine import Exit
from milabox.errors import ShipError
from milabox.origin import host_facts
from milabox.rundir.layout import (
    EVENTS_NAME,
    FORMAT_VERSION,
    LOG_NAME,
    MANIFEST_NAME,
    RECORD_NAME,
    attempt_folder,
    write_json_atomic,
)
from milabox.rundir.outcome import classify
from milabox.rundir.read import load_run


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line cut short: the reader counts it again when the run is reported
        if isinstance(obj, dict):
            events.append(obj)
    return events


def _folder_of(source: Path, staging: Path) -> Path:
    if source.is_dir():
        return source
    try:
        with tarfile.open(source) as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, links out or devices
    except (tarfile.TarError, OSError) as e:
        raise ShipError(f"{source}: not a folder or a readable tar of one ({e})") from None
    found = sorted(staging.rglob(EVENTS_NAME))
    if len(found) != 1:
        raise ShipError(f"{source}: holds {len(found)} {EVENTS_NAME} files; a plain run holds exactly one")
    return found[0].parent


def adopt_plain_run(source: Path, into: Path, vendor: str | None = None) -> Path:
    """Make a run folder under ``into`` from the results of a plain ``docker run IMAGE run ROW``.

    Args:
        source: the folder mounted as ``/results`` (or a tar of it).
        into: the folder of runs to add it to (created if missing).
        vendor: the vendor it ran on; default: the one its ``start`` event names.

    Returns:
        The new run folder, ``INTO/plain-<benchmark>-<time>``.

    Raises:
        ShipError: no events, no start event naming the benchmark, no vendor, or the target exists.
    """
    source, into = Path(source), Path(into)
    with tempfile.TemporaryDirectory(prefix="milabox-adopt-") as tmp:
        folder = _folder_of(source, Path(tmp))
        events_path = folder / EVENTS_NAME
        if not events_path.is_file():
            raise ShipError(f"{source}: no {EVENTS_NAME}; not the results of `docker run IMAGE run ROW`")
        events = _events(events_path)
        start = next((e for e in events if e.get("event") == "start"), None)
        if start is None or not start.get("benchmark"):
            raise ShipError(f"{events_path}: no start event naming the benchmark; not a milabox benchmark's events")
        name = str(start["benchmark"])
        vendor = vendor or start.get("vendor")
        if not vendor:
            raise ShipError(f"{events_path}: the events do not say the vendor; pass --vendor (cpu, cuda, rocm, xpu)")
        bench = all_benchmarks().get(name)
        end = next((e for e in reversed(events) if e.get("event") == "end"), None)
        stamp = str(start.get("time", ""))
        when = dt.datetime.fromtimestamp(float(stamp), dt.UTC) if stamp else dt.datetime.now(dt.UTC)
        run_dir = into / f"plain-{name}-{when.strftime('%Y%m%d-%H%M%S')}"
        if run_dir.exists():
            raise ShipError(f"{run_dir} already exists (adopted before?); pass --into another folder or remove it")
        attempt = run_dir / attempt_folder(name, 0, "all")
        attempt.mkdir(parents=True)
        shutil.copy2(events_path, attempt / EVENTS_NAME)
        log = folder / LOG_NAME
        if log.is_file():
            shutil.copy2(log, attempt / LOG_NAME)
        # No exit code came back with the folder: the end event stands for it (none at all: it did not finish).
        code = 0 if end is not None and end.get("status") == "ok" else 1
        status, cause, rate = classify(Exit(code=code), attempt / EVENTS_NAME, attempt / LOG_NAME, 0)
        if end is None:
            cause = "the events end without an end event: the container was stopped or died (plain docker run)"
        started = when.isoformat(timespec="seconds")
        write_json_atomic(attempt / RECORD_NAME, {
            "format": FORMAT_VERSION, "benchmark": name, "group": start.get("group") or (bench.group if bench else name),
            "repeat": 0, "device": "all", "plan": bench.plan if bench else "per_device",
            "unit": bench.unit if bench else None, "weight": bench.weight if bench else 0.0,
            "size": start.get("size"), "image": None, "image_id": None, "timeout_s": None,
            "status": status, "cause": cause, "rate": rate, "exit_code": None, "started": started,
            "runtime": "plain docker run", "adopted_from": str(source.resolve())})
        write_json_atomic(run_dir / MANIFEST_NAME, {
            "format": FORMAT_VERSION, **host_facts(), "vendor": vendor, "size": start.get("size"),
            "command": ["docker", "run", "IMAGE", "run", name], "benchmarks": [name], "repeat": 1,
            "devices": ["all"], "images": {}, "started": started, "ended": started, "status": "complete",
            "runtime": "plain docker run", "adopted": {"from": str(source.resolve()), "by": host_facts()}})
    try:
        load_run(run_dir)  # what report and compare will read: a malformed result is refused now
    except Exception:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir
