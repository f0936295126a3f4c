"""Read run folders (see docs/results-format.md) into plain dataclasses, and write JSON atomically.

Nothing here knows about benchmark definitions: a run folder is self-describing, so old runs stay
readable after ``benchmarks/`` changes.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milabox.errors import ResultsError

#: The result-file format version this module reads and the host writes.
FORMAT_VERSION = 1

MANIFEST_NAME = "manifest.json"
RECORD_NAME = "record.json"
EVENTS_NAME = "events.jsonl"
LOG_NAME = "container.log"

#: Event kinds no report, comparison or plot uses: ``load_run(path, SKIPPED_BY_REPORTS)`` reads faster.
SKIPPED_BY_REPORTS = frozenset({"loss"})

#: An attempt folder: ``r<repeat>-d<device>``, e.g. ``r0-d0`` or ``r2-dall``.
ATTEMPT_DIR_RE = re.compile(r"^r(\d+)-d(.+)$")


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
class Attempt:
    """One container run of one benchmark: its folder, record and parsed events."""

    path: Path
    record: Record
    events: list[Event] = field(default_factory=list)
    skipped_lines: int = 0  # events.jsonl lines that were not JSON objects (e.g. a cut last line)

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
        """The last ``summary`` event, or None if the benchmark never reported one."""
        for ev in reversed(self.events):
            if ev.kind == "summary":
                return ev
        return None

    @property
    def rate(self) -> float | None:
        """The summary ``rate`` (items/s on this attempt's devices) if positive and finite, else None."""
        ev = self.summary
        if ev is None:
            return None
        value = _number(ev.data.get("rate"))
        return value if value is not None and value > 0 else None

    @property
    def step_rates(self) -> list[float]:
        """Per-step ``rate`` event values (measured steps only, warm-up excluded), finite ones only."""
        out = []
        for ev in self.events:
            if ev.kind == "rate":
                value = _number(ev.data.get("value"))
                if value is not None:
                    out.append(value)
        return out

    @property
    def peak_memory_mb(self) -> float | None:
        """The largest ``memory`` event ``peak_mb``, or None if none was reported."""
        peaks = [_number(ev.data.get("peak_mb")) for ev in self.events if ev.kind == "memory"]
        peaks = [p for p in peaks if p is not None]
        return max(peaks) if peaks else None

    @property
    def rate_series(self) -> list[tuple[float, float]]:
        """(time, value) of each ``rate`` event with a finite time and value, in file order."""
        out = []
        for ev in self.events:
            if ev.kind == "rate" and ev.time is not None:
                value = _number(ev.data.get("value"))
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
    def measured_window(self) -> tuple[float, float] | None:
        """Approximate (start, end) Unix times of the measured steps: the summary's ``seconds`` before the last
        ``rate`` event (warm-up excluded). None without a summary or a rate event."""
        summary = self.summary
        seconds = _number(summary.data.get("seconds")) if summary is not None else None
        if seconds is None or seconds <= 0:
            return None
        end = next((ev.time for ev in reversed(self.events) if ev.kind == "rate" and ev.time is not None), None)
        return None if end is None else (end - seconds, end)

    @property
    def items(self) -> float | None:
        """The summary's ``items`` (work measured, in the unit times seconds), if reported."""
        ev = self.summary
        return _number(ev.data.get("items")) if ev is not None else None

    @property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` event's fields (torch, device, threads, precision...), or {} if there is none."""
        for ev in self.events:
            if ev.kind == "meta":
                return ev.data
        return {}

    @property
    def environment(self) -> dict[str, str]:
        """The container's environment, from the record's ``container_request`` ({} when not recorded)."""
        request = self.record.raw.get("container_request")
        env = request.get("environment") if isinstance(request, dict) else None
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
    """A whole run folder: its manifest and every attempt, sorted by benchmark, repeat, device."""

    path: Path
    manifest: Manifest
    attempts: list[Attempt] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Reading


def load_run(path: str | os.PathLike[str], skip: Collection[str] = ()) -> Run:
    """Read a run folder: its manifest, and each ``<benchmark>/r<repeat>-d<device>/`` attempt.

    Files and folders that do not fit the layout are ignored. A missing ``events.jsonl`` gives an
    attempt with no events (the container may have died before writing one).

    Args:
        path: the run folder.
        skip: event kinds not to read (see ``read_events``); reports pass ``SKIPPED_BY_REPORTS``.

    Returns:
        The Run, attempts sorted by benchmark folder, repeat, then device.

    Raises:
        ResultsError: the folder does not exist, or its manifest.json or an attempt's record.json
            is missing or malformed (the message names the file and the problem).
    """
    root = Path(path)
    if not root.is_dir():
        raise ResultsError(f"{root}: not a run folder (no such directory)")
    manifest = read_manifest(root / MANIFEST_NAME)
    attempts: list[Attempt] = []
    # os.scandir: the entry types come with the listing (no stat per entry); reports read thousands.
    with os.scandir(root) as entries:
        benches = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for bench in benches:
        found = []
        with os.scandir(root / bench) as entries:
            for entry in entries:
                m = ATTEMPT_DIR_RE.match(entry.name)
                if m and entry.is_dir():
                    found.append((int(m.group(1)), m.group(2), entry.path))
        for _repeat, _device, attempt_dir in sorted(found, key=lambda t: (t[0], t[1])):
            attempts.append(load_attempt(attempt_dir, skip))
    return Run(path=root, manifest=manifest, attempts=attempts)


def load_attempt(path: str | os.PathLike[str], skip: Collection[str] = ()) -> Attempt:
    """Read one attempt folder (its record.json and events.jsonl).

    Args:
        path: the attempt folder, e.g. ``RUN_DIR/bert-fp32/r0-d0``.
        skip: event kinds not to read (see ``read_events``).

    Returns:
        The Attempt.

    Raises:
        ResultsError: record.json is missing or malformed.
    """
    folder = Path(path)
    record = read_record(folder / RECORD_NAME)
    events, skipped = read_events(folder / EVENTS_NAME, skip)
    return Attempt(path=folder, record=record, events=events, skipped_lines=skipped)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest.json.

    Args:
        path: the manifest file.

    Returns:
        The Manifest; fields the file lacks (other than the required ones) take their defaults.

    Raises:
        ResultsError: the file is missing, not JSON, not an object, of an unknown format, or a
            field has the wrong type. Required: ``format``, ``benchmarks``, ``status``.
    """
    p = Path(path)
    obj = _read_json_object(p)
    f = _Fields(p, obj)
    return Manifest(
        format=f.format(),
        benchmarks=f.strings("benchmarks", required=True),
        status=f.text("status", required=True),
        milabox_version=f.text("milabox_version"),
        source_commit=f.text("source_commit"),
        host=f.text("host"),
        vendor=f.text("vendor"),
        size=f.text("size"),
        command=f.strings("command"),
        repeat=f.integer("repeat"),
        devices=f.strings("devices"),
        images=f.mapping("images"),
        started=f.text("started"),
        ended=f.text("ended"),
        raw=obj,
    )


def read_record(path: str | os.PathLike[str]) -> Record:
    """Read and check an attempt's record.json.

    Args:
        path: the record file.

    Returns:
        The Record.

    Raises:
        ResultsError: the file is missing, not JSON, not an object, of an unknown format, or a
            field is missing or has the wrong type. Required: ``format``, ``benchmark``,
            ``repeat``, ``device``, ``plan``, ``unit``, ``weight``, ``status``.
    """
    p = Path(path)
    obj = _read_json_object(p)
    f = _Fields(p, obj)
    weight = f.number("weight", required=True)
    if weight is None or weight < 0:
        raise ResultsError(f"{p}: field 'weight' must be a finite number >= 0, got {obj.get('weight')!r}")
    benchmark = f.text("benchmark", required=True)
    if not benchmark:
        raise ResultsError(f"{p}: field 'benchmark' is empty")
    return Record(
        format=f.format(),
        benchmark=benchmark,
        repeat=f.integer("repeat", required=True),
        device=f.device("device"),
        plan=f.text("plan", required=True),
        unit=f.text("unit", required=True),
        weight=weight,
        status=f.text("status", required=True),
        cause=f.text("cause"),
        group=f.text("group"),
        size=f.text("size"),
        image=f.text("image"),
        image_id=f.text("image_id"),
        exit_code=f.integer("exit_code"),
        timed_out=bool(obj.get("timed_out", False)),
        oom_killed=bool(obj.get("oom_killed", False)),
        wall_s=f.number("wall_s"),
        started=f.text("started"),
        ended=f.text("ended"),
        raw=obj,
    )


def read_events(path: str | os.PathLike[str], skip: Collection[str] = ()) -> tuple[list[Event], int]:
    """Read an events.jsonl, tolerating what a killed or newer container may leave.

    Blank lines are skipped; lines that are not a JSON object with a string ``event`` (such as a
    last line cut short) are skipped and counted. Unknown kinds and fields are kept as they are.

    Args:
        path: the events file. A missing file reads as no events.
        skip: event kinds to leave out (e.g. ``loss``, one a step, which reports never use): lines the
            runtime wrote for them are not even parsed.

    Returns:
        (events in file order, number of skipped lines).

    Raises:
        Nothing for bad content; OSError only if the file exists but cannot be read.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return [], 0
    events: list[Event] = []
    skipped = 0
    # errors="replace": a cut-short last line may end inside a multi-byte character.
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if skip:
        # The runtime writes "event" first (json.dumps of a dict built in that order): drop those lines
        # unparsed; any other layout is caught by the kind check below.
        prefixes = tuple(f'{{"event": {json.dumps(kind)}' for kind in skip)
        lines = [line for line in lines if not line.startswith(prefixes)]
    fast = _read_events_fast(lines)
    if fast is not None:
        return ([ev for ev in fast if ev.kind not in skip] if skip else fast), 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        kind = obj.get("event") if isinstance(obj, dict) else None
        if not isinstance(kind, str):
            skipped += 1
            continue
        if kind in skip:
            continue
        data = {k: v for k, v in obj.items() if k not in ("event", "time")}
        events.append(Event(kind=kind, time=_number(obj.get("time")), data=data))
    return events, skipped


def _read_events_fast(lines: list[str]) -> list[Event] | None:
    """The common case in one parse (reports read thousands of files): every line a JSON object with a
    string ``event``, no blank line. None otherwise, so that the caller goes line by line."""
    try:
        objs = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        return None
    if len(objs) != len(lines):  # a line cut short that happened to join its neighbour into valid JSON
        return None
    if not all(type(obj) is dict and type(obj.get("event")) is str for obj in objs):
        return None
    events = [Event(obj.pop("event"), obj.pop("time", None), obj) for obj in objs]
    for ev in events:
        if type(ev.time) is not float or not math.isfinite(ev.time):
            ev.time = _number(ev.time)
    return events


# --------------------------------------------------------------------------------------------
# Writing


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON so that readers see either the old file or the complete new one.

    The JSON goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` with ``os.replace``. The file ends up mode 0644.

    Args:
        path: the destination file; its folder must exist.
        obj: a JSON-serializable value (NaN and infinity are refused: they are not JSON).

    Returns:
        None.

    Raises:
        OSError: the folder is missing or not writable.
        TypeError, ValueError: ``obj`` is not serializable as strict JSON (nothing is written).
    """
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"  # serialize before touching disk
    write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) so that readers see either the old file or the complete new one.

    Same method as ``write_json_atomic``: a temporary file in the same folder, fsync, ``os.replace``.

    Args:
        path: the destination file; its folder must exist.
        text: the content.

    Returns:
        None.

    Raises:
        OSError: the folder is missing or not writable (nothing is left behind).
    """
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; best effort (not possible on every platform)
        dir_fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------------------------
# Helpers


def _number(value: Any) -> float | None:
    """A finite int/float as float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_json_object(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{p}: missing") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{p}: not UTF-8 text") from None
    except OSError as err:
        raise ResultsError(f"{p}: cannot be read ({err.strerror or err})") from None
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise ResultsError(f"{p}: not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise ResultsError(f"{p}: expected a JSON object, got {type(obj).__name__}")
    return obj


class _Fields:
    """Typed access to a JSON object's fields, raising ResultsError naming the file and field."""

    def __init__(self, path: Path, obj: dict[str, Any]) -> None:
        self.path = path
        self.obj = obj

    def _bad(self, key: str, what: str) -> ResultsError:
        shown = repr(self.obj[key])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return ResultsError(f"{self.path}: field '{key}' must be {what}, got {shown}")

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.obj:
            if required:
                raise ResultsError(f"{self.path}: field '{key}' is missing")
            return None
        return self.obj[key]

    def format(self) -> int:
        value = self.integer("format", required=True)
        if value > FORMAT_VERSION:
            raise ResultsError(
                f"{self.path}: format {value} is newer than this milabox reads ({FORMAT_VERSION}); upgrade milabox"
            )
        if value < 1:
            raise self._bad("format", "a positive integer")
        return value

    def text(self, key: str, required: bool = False) -> Any:
        value = self._get(key, required)
        if value is None:
            if required:
                raise self._bad(key, "a string")
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def integer(self, key: str, required: bool = False) -> Any:
        value = self._get(key, required)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        return value

    def number(self, key: str, required: bool = False) -> float | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        num = _number(value)
        if num is None:
            raise self._bad(key, "a finite number")
        return num

    def device(self, key: str) -> str:
        value = self._get(key, True)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # tolerate 0 for "0"
        if not isinstance(value, str) or not value:
            raise self._bad(key, 'a device name such as "0" or "all"')
        return value

    def strings(self, key: str, required: bool = False) -> list[Any]:
        value = self._get(key, required)
        if value is None and not required:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings")
        return list(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return value
