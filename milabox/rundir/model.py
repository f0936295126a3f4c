"""What a run folder holds, as plain dataclasses: manifest, attempt records, events, and the run they make.

Nothing here knows about benchmark definitions: a run folder is self-describing, so old runs stay readable
after the suite changes. :mod:`milabox.rundir.read` fills these from the files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milabox.rundir.layout import EVENTS_NAME, LOG_NAME


def finite_number(value: Any) -> float | None:
    """A finite int/float as float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Manifest:
    """The run-level ``manifest.json``. ``raw`` holds every field, known or not."""

    format: int
    benchmarks: list[str]
    status: str
    milabox_version: str | None = None
    source_commit: str | None = None
    host: str | None = None
    vendor: str | None = None
    size: str | None = None
    command: list[str] = field(default_factory=list)
    repeat: int | None = None
    devices: list[str] = field(default_factory=list)
    images: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    ended: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # benchmark -> why the vendor skipped it
    overrides: dict[str, Any] = field(default_factory=dict)  # settings the run changed from the definitions
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Record:
    """One attempt's ``record.json``, written by the host. ``raw`` holds every field."""

    format: int
    benchmark: str
    repeat: int
    device: str
    plan: str
    unit: str
    weight: float
    status: str
    cause: str | None = None
    group: str | None = None
    size: str | None = None
    image: str | None = None
    image_id: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    oom_killed: bool = False
    wall_s: float | None = None
    started: str | None = None
    ended: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the attempt succeeded (``status == "ok"``)."""
        return self.status == "ok"


@dataclass
class Event:
    """One line of ``events.jsonl``: its kind, its time, and all its other fields in ``data``."""

    kind: str
    time: float | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttemptResult:
    """One container run of one benchmark: its folder, record and parsed events."""

    path: Path
    record: Record
    events: list[Event] = field(default_factory=list)
    skipped_lines: int = 0  # events.jsonl lines that were not JSON objects (e.g. a cut last line)
    error: str | None = None  # why record.json could not be read; then ``record`` is a failed stand-in

    @property
    def measured_events(self) -> list[Event]:
        """The events up to and including the first ``summary``: what the benchmark measured. Anything after
        it (but ``end``) is counted by ``late_events`` and read by no statistic."""
        for i, ev in enumerate(self.events):
            if ev.kind == "summary":
                return self.events[: i + 1]
        return self.events

    @property
    def late_events(self) -> int:
        """Events after the first ``summary`` other than ``end``: the runtime writes none, so they are suspect."""
        return sum(1 for ev in self.events[len(self.measured_events):] if ev.kind != "end")

    @property
    def warnings(self) -> list[str]:
        """What is wrong with this attempt's files but did not fail it: corrupt event lines, late events."""
        out = []
        if self.skipped_lines:
            out.append(f"{self.skipped_lines} corrupt line(s) in {self.path / EVENTS_NAME} (skipped)")
        if self.late_events:
            out.append(f"{self.late_events} event(s) after the summary in {self.path / EVENTS_NAME} (ignored)")
        return out

    @property
    def name(self) -> str:
        """The attempt folder's name, e.g. ``r0-d1``."""
        return self.path.name

    @property
    def benchmark(self) -> str:
        """The benchmark row this attempt belongs to (from its record)."""
        return self.record.benchmark

    @property
    def log_path(self) -> Path:
        """Where the container's stdout/stderr were saved (may not exist)."""
        return self.path / LOG_NAME

    @property
    def summary(self) -> Event | None:
        """The first ``summary`` event (the runtime writes one), or None if the benchmark never reported one."""
        for ev in self.events:
            if ev.kind == "summary":
                return ev
        return None

    @property
    def rate(self) -> float | None:
        """The summary ``rate`` (items/s on this attempt's devices) if positive and finite, else None."""
        ev = self.summary
        if ev is None:
            return None
        value = finite_number(ev.data.get("rate"))
        return value if value is not None and value > 0 else None

    @property
    def step_rates(self) -> list[float]:
        """Per-step ``rate`` event values (measured steps only, warm-up excluded), finite ones only."""
        out = []
        for ev in self.measured_events:
            if ev.kind == "rate":
                value = finite_number(ev.data.get("value"))
                if value is not None:
                    out.append(value)
        return out

    @property
    def peak_memory_mb(self) -> float | None:
        """The largest ``memory`` event ``peak_mb``, or None if none was reported."""
        peaks = [finite_number(ev.data.get("peak_mb")) for ev in self.events if ev.kind == "memory"]
        peaks = [p for p in peaks if p is not None]
        return max(peaks) if peaks else None

    @property
    def rate_series(self) -> list[tuple[float, float]]:
        """(time, value) of each ``rate`` event with a finite time and value, in file order."""
        out = []
        for ev in self.measured_events:
            if ev.kind == "rate" and ev.time is not None:
                value = finite_number(ev.data.get("value"))
                if value is not None:
                    out.append((ev.time, value))
        return out

    @property
    def process_span(self) -> tuple[float, float] | None:
        """(time of the ``start`` event, time of the ``end`` event): the benchmark's own process time, if both exist."""
        start = next((ev.time for ev in self.events if ev.kind == "start" and ev.time is not None), None)
        end = next((ev.time for ev in reversed(self.events) if ev.kind == "end" and ev.time is not None), None)
        return (start, end) if start is not None and end is not None and end >= start else None

    @property
    def process_started(self) -> float | None:
        """When the benchmark's process began (its ``start`` event's ``process_started``, before its interpreter
        and imports), if the runtime could tell."""
        start = next((ev for ev in self.events if ev.kind == "start"), None)
        return finite_number(start.data.get("process_started")) if start is not None else None

    @property
    def measured_window(self) -> tuple[float, float] | None:
        """Approximate (start, end) Unix times of the measured steps: the summary's ``seconds`` before the last
        ``rate`` event (warm-up excluded). None without a summary or a rate event."""
        summary = self.summary
        seconds = finite_number(summary.data.get("seconds")) if summary is not None else None
        if seconds is None or seconds <= 0:
            return None
        end = next((ev.time for ev in reversed(self.measured_events) if ev.kind == "rate" and ev.time is not None),
                   None)
        return None if end is None else (end - seconds, end)

    @property
    def items(self) -> float | None:
        """The summary's ``items`` (work measured, in the unit times seconds), if reported."""
        ev = self.summary
        return finite_number(ev.data.get("items")) if ev is not None else None

    @property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` event's fields (torch, device, threads, precision...), or {} if there is none."""
        for ev in self.events:
            if ev.kind == "meta":
                return ev.data
        return {}

    @property
    def environment(self) -> dict[str, str]:
        """The attempt's environment: its ``container_request``'s, a native one's ``process_request["env"]`` ({})."""
        request = self.record.raw.get("container_request")
        env = request.get("environment") if isinstance(request, dict) else None
        if env is None and isinstance(process := self.record.raw.get("process_request"), dict):
            env = process.get("env")
        return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        """The benchmark's parameters as passed in ``MILABOX_CONFIG`` ({} when missing or not a JSON object)."""
        try:
            obj = json.loads(self.environment.get("MILABOX_CONFIG", ""))
        except ValueError:
            return {}
        return obj if isinstance(obj, dict) else {}


@dataclass
class Run:
    """A whole run folder: its manifest and every attempt, sorted by benchmark, repeat, device.

    A resumed run is one run: an attempt whose record names a ``superseded_by`` retry is in ``superseded``, not
    in ``attempts``, so that reports, comparisons and exit codes count the retry and not both."""

    path: Path
    manifest: Manifest
    attempts: list[AttemptResult] = field(default_factory=list)  # what reports count: superseded ones left out
    superseded: list[AttemptResult] = field(default_factory=list)  # failed attempts a ``--resume`` retried

    @property
    def setup(self) -> dict[str, Any]:
        """What must match for two runs' attempts to be repeats of one measurement: vendor, host, size, the
        image ids per group, and the manifest's ``overrides``."""
        m = self.manifest
        images = {g: (i.get("id") if isinstance(i, dict) else i) for g, i in sorted(m.images.items())}
        return {"vendor": m.vendor, "host": m.host, "size": m.size, "images": images, "overrides": m.overrides}
