"""Energy of one attempt from its ``telemetry.jsonl``: cumulative counters where the hardware has them,
else the integral of sampled power.

Accelerators count when any of them has power data; the host CPU (``"device": "cpu"``) counts only
when no accelerator does (a CPU-vendor run), so a GPU's items per joule are not diluted by the host.
Only the devices an attempt ran on count (``devices``); a batch of attempts that ran together counts each of
its devices once (``batch_energy``). ``idle.jsonl`` gives each device's idle power, and so the energy above idle.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from milabox.rundir.layout import HOST_DEVICE as HOST
from milabox.rundir.layout import IDLE_NAME, TELEMETRY_NAME

#: The device label of the host CPU's samples (milabox.execution.telemetry.cpu writes it).

Series = list[tuple[float, float]]  # (time, value), time-ordered


@dataclass(frozen=True)
class Energy:
    """Energy used during an attempt (or part of it).

    Attributes:
        joules: energy summed over the devices counted.
        mean_power_w: joules / seconds.
        seconds: length of the window the energy covers.
        source: ``counter`` (every device had a cumulative energy counter) or ``power`` (at least one
            device's energy is the trapezoid integral of its sampled power).
        device_seconds: each counted device's window, for the energy above idle (``net_joules``).
    """

    joules: float
    mean_power_w: float
    seconds: float
    source: str
    device_seconds: dict[str, float] = field(default_factory=dict)  # counted device -> seconds of its window


def read_samples(path: Path) -> list[dict]:
    """The samples of a ``telemetry.jsonl`` (or ``idle.jsonl``); a line cut short or not an object is skipped.

    Args:
        path: the file.

    Returns:
        The samples in file order ([] when the file is missing).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    samples = []
    for line in text.splitlines():
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if isinstance(sample, dict) and isinstance(sample.get("time"), (int, float)) and "device" in sample:
            samples.append(sample)
    return samples


def _at(series: Series, t: float) -> float:
    """The series' value at ``t`` by linear interpolation (t within the series' span)."""
    for (t0, v0), (t1, v1) in pairwise(series):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return series[-1][1] if t >= series[-1][0] else series[0][1]


def _clip(series: Series, start: float | None, end: float | None) -> tuple[Series, float, float] | None:
    """The series restricted to [start, end] with interpolated end points, or None without a positive overlap."""
    if len(series) < 2:
        return None
    lo = series[0][0] if start is None else max(start, series[0][0])
    hi = series[-1][0] if end is None else min(end, series[-1][0])
    if hi <= lo:
        return None
    inner = [(t, v) for t, v in series if lo < t < hi]
    return [(lo, _at(series, lo)), *inner, (hi, _at(series, hi))], lo, hi


def _series(samples: list[dict], field: str) -> Series:
    points = sorted((float(s["time"]), float(s[field])) for s in samples
                    if isinstance(s.get(field), (int, float)) and not isinstance(s.get(field), bool))
    return [p for i, p in enumerate(points) if i == 0 or p[0] > points[i - 1][0]]  # one value per time


def _device_energy(samples: list[dict], start: float | None, end: float | None) -> tuple[float, float, float, str] | None:
    """(joules, window start, window end, source) of one device, or None without energy data in the window."""
    counter = _series(samples, "energy_j")
    monotonic = all(b[1] >= a[1] for a, b in pairwise(counter))
    clipped = _clip(counter, start, end) if monotonic else None  # a counter that went back was reset: not trusted
    if clipped:
        points, lo, hi = clipped
        return points[-1][1] - points[0][1], lo, hi, "counter"
    clipped = _clip(_series(samples, "power_w"), start, end)
    if clipped:
        points, lo, hi = clipped
        joules = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(points))
        return joules, lo, hi, "power"
    return None


def _by_device(folder: Path, name: str = TELEMETRY_NAME) -> dict[str, list[dict]]:
    by_device: dict[str, list[dict]] = defaultdict(list)
    for sample in read_samples(folder / name):
        by_device[str(sample["device"])].append(sample)
    return by_device


Result = tuple[float, float, float, str]  # (joules, window start, window end, source) of one device


def _results(by_device: dict[str, list[dict]], start: float | None, end: float | None,
             devices: Collection[str] | None) -> dict[str, Result]:
    """Each device's energy in the window: the accelerators in ``devices`` (None: all) and the host CPU."""
    return {d: r for d, s in by_device.items()
            if (d == HOST or devices is None or d in devices) and (r := _device_energy(s, start, end)) is not None}


def _total(results: dict[str, Result]) -> Energy | None:
    accelerators = {d: r for d, r in results.items() if d != HOST}
    counted = accelerators or results
    if not counted:
        return None
    joules = sum(r[0] for r in counted.values())
    seconds = max(r[2] for r in counted.values()) - min(r[1] for r in counted.values())
    source = "counter" if all(r[3] == "counter" for r in counted.values()) else "power"
    return Energy(joules=round(joules, 3), mean_power_w=round(joules / seconds, 3) if seconds > 0 else 0.0,
                  seconds=round(seconds, 3), source=source,
                  device_seconds={d: round(r[2] - r[1], 3) for d, r in counted.items()})


def attempt_energy(attempt_folder: Path, start: float | None = None, end: float | None = None,
                   devices: Collection[str] | None = None) -> Energy | None:
    """Energy of an attempt from its ``telemetry.jsonl``.

    Per device: the cumulative counter's last minus first value (``energy_j``) where it has one that
    never goes back, else the trapezoid integral of ``power_w`` over time; devices are summed.

    Args:
        attempt_folder: the attempt folder holding ``telemetry.jsonl``.
        start: Unix time to start from (e.g. the end of warm-up); None: the first sample. Values at the
            window's edges are interpolated between samples.
        end: Unix time to stop at; None: the last sample.
        devices: the accelerator labels the attempt ran on (``attempt_devices``); None: every one sampled.

    Returns:
        The energy, or None when no power or energy was sampled in the window (no file, no power sensor,
        fewer than two samples).
    """
    return _total(_results(_by_device(attempt_folder), start, end, devices))


def attempt_devices(label: str) -> tuple[str, ...] | None:
    """The device labels of a record's ``device`` (``0``, ``0+1``), or None for ``all``.

    Args:
        label: the record's ``device``.

    Returns:
        The labels, or None when the attempt had every device.
    """
    return None if label == "all" else tuple(label.split("+"))


def batch_energy(parts: Sequence[tuple[Path, tuple[float, float] | None, Collection[str] | None]]) -> Energy | None:
    """Energy of attempts that ran together (a batch): the sum over the devices they ran on.

    Each accelerator counts once, over its own attempt's window; the host CPU, which every attempt's file
    samples, counts once (only when no accelerator has data, as in ``attempt_energy``), over the union of the
    windows, from the first file that has it. A part whose samples do not cover its window counts whole.

    Args:
        parts: per attempt, (its folder, its measured window or None, its devices as ``attempt_devices`` gives).

    Returns:
        The batch's energy, or None when no part has power or energy data.
    """
    results: dict[str, Result] = {}
    host: list[dict] = []
    windows = [w for _, w, _ in parts if w]
    for folder, window, devices in parts:
        by_device = _by_device(folder)
        host = host or by_device.pop(HOST, [])
        by_device.pop(HOST, None)
        found = _results(by_device, *(window or (None, None)), devices) or _results(by_device, None, None, devices)
        results.update({d: r for d, r in found.items() if d not in results})
    if not results and host:
        lo, hi = (min(w[0] for w in windows), max(w[1] for w in windows)) if windows else (None, None)
        cpu = _device_energy(host, lo, hi) or _device_energy(host, None, None)
        if cpu is not None:
            results[HOST] = cpu
    return _total(results)


def idle_power(run_folders: Sequence[Path]) -> dict[str, float]:
    """Each device's idle power from the runs' ``idle.jsonl`` (sampled before the first attempt).

    Args:
        run_folders: the run folders (pooled runs share a setup, so their idle powers are averaged).

    Returns:
        device label -> mean watts over the idle samples, in label order ({} without the file or power data).
    """
    watts: dict[str, list[float]] = defaultdict(list)
    for folder in run_folders:
        for device, samples in _by_device(folder, IDLE_NAME).items():
            r = _device_energy(samples, None, None)
            if r is not None and r[2] > r[1]:
                watts[device].append(r[0] / (r[2] - r[1]))
    return {d: round(sum(w) / len(w), 3) for d, w in sorted(watts.items())}


def net_joules(energy: Energy, idle: dict[str, float]) -> float | None:
    """The energy above idle: each counted device's joules less its idle power over its window.

    Args:
        energy: what ``attempt_energy`` or ``batch_energy`` returned.
        idle: what ``idle_power`` returned.

    Returns:
        The joules, or None when a counted device has no idle power.
    """
    if not energy.device_seconds or any(d not in idle for d in energy.device_seconds):
        return None
    return round(energy.joules - sum(idle[d] * s for d, s in energy.device_seconds.items()), 3)
