"""Read run folders (see docs/results-format.md) into the dataclasses of :mod:`milabox.rundir.model`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from milabox.errors import ResultsError
from milabox.rundir.layout import ATTEMPT_DIR_RE, EVENTS_NAME, FORMAT_VERSION, MANIFEST_NAME, RECORD_NAME
from milabox.rundir.model import AttemptResult, Event, Manifest, Record, Run, finite_number

#: Event kinds no report, comparison or plot uses: ``load_run(path, SKIPPED_BY_REPORTS)`` reads faster.
SKIPPED_BY_REPORTS = frozenset({"loss"})


# --------------------------------------------------------------------------------------------
# Reading


def load_run(path: str | os.PathLike[str], skip: Collection[str] = ()) -> Run:
    """Read a run folder: its manifest, and each ``<benchmark>/r<repeat>-d<device>/`` attempt.

    Files and folders that do not fit the layout are ignored. A missing ``events.jsonl`` gives an
    attempt with no events (the container may have died before writing one). An attempt whose record.json
    is missing or malformed becomes a failed attempt naming the file (``unreadable_attempt``).

    Args:
        path: the run folder.
        skip: event kinds not to read (see ``read_events``); reports pass ``SKIPPED_BY_REPORTS``.

    Returns:
        The Run, attempts sorted by benchmark folder, repeat, then device; an attempt a ``--resume`` retried
        (its record has ``superseded_by``) is in ``Run.superseded``, not ``Run.attempts``.

    Raises:
        ResultsError: the folder does not exist, or its manifest.json is missing or malformed (the
            message names the file and the problem).
    """
    root = Path(path)
    if not root.is_dir():
        raise ResultsError(f"{root}: not a run folder (no such directory)")
    manifest = read_manifest(root / MANIFEST_NAME)
    attempts: list[AttemptResult] = []
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
        for repeat, device, attempt_dir in sorted(found, key=lambda t: (t[0], t[1])):
            try:
                attempts.append(load_attempt(attempt_dir, skip))
            except ResultsError as err:  # one bad record is one failed row, not a lost report
                attempts.append(unreadable_attempt(Path(attempt_dir), bench, repeat, device, str(err)))
    return Run(path=root, manifest=manifest, attempts=[a for a in attempts if not _superseded(a)],
               superseded=[a for a in attempts if _superseded(a)])


def _superseded(attempt: AttemptResult) -> bool:
    return bool(attempt.record.raw.get("superseded_by"))


def unreadable_attempt(folder: Path, benchmark: str, repeat: int, device: str, error: str) -> AttemptResult:
    """A failed stand-in for an attempt whose record.json is missing or malformed.

    Args:
        folder: the attempt folder.
        benchmark, repeat, device: from the folder's path (``<benchmark>/r<repeat>-d<device>``).
        error: the ResultsError's message (it names the file).

    Returns:
        An AttemptResult with status ``failed``, the error as its cause and in ``error``, no events, weight 0
        and an empty unit (the summary takes both from the readable attempts).
    """
    record = Record(format=FORMAT_VERSION, benchmark=benchmark, repeat=repeat, device=device, plan="", unit="",
                    weight=0.0, status="failed", cause=f"unreadable result: {error}")
    return AttemptResult(path=folder, record=record, error=error)


def load_attempt(path: str | os.PathLike[str], skip: Collection[str] = ()) -> AttemptResult:
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
    return AttemptResult(path=folder, record=record, events=events, skipped_lines=skipped)


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
        excluded={str(k): str(v) for k, v in f.mapping("excluded").items()},
        overrides=f.mapping("overrides"),
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
        events.append(Event(kind=kind, time=finite_number(obj.get("time")), data=data))
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
            ev.time = finite_number(ev.time)
    return events


# --------------------------------------------------------------------------------------------
# Helpers



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
        num = finite_number(value)
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
