"""Energy of one attempt from its ``telemetry.jsonl``: cumulative counters where the hardware has them,
else the integral of sampled power.

Accelerators count when any of them has power data; the host CPU (``"device": "cpu"``) counts only
when no accelerator does (a CPU-vendor run), so a GPU's items per joule are not diluted by the host.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from milabox.rundir.layout import TELEMETRY_NAME

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
    """

    joules: float
    mean_power_w: float
    seconds: float
    source: str


def read_samples(path: Path) -> list[dict]:
    """The samples of a ``telemetry.jsonl``; a line cut short or not an object is skipped.

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


def attempt_energy(attempt_folder: Path, start: float | None = None, end: float | None = None) -> Energy | None:
    """Energy of an attempt from its ``telemetry.jsonl``.

    Per device: the cumulative counter's last minus first value (``energy_j``) where it has one that
    never goes back, else the trapezoid integral of ``power_w`` over time; devices are summed.

    Args:
        attempt_folder: the attempt folder holding ``telemetry.jsonl``.
        start: Unix time to start from (e.g. the end of warm-up); None: the first sample. Values at the
            window's edges are interpolated between samples.
        end: Unix time to stop at; None: the last sample.

    Returns:
        The energy, or None when no power or energy was sampled in the window (no file, no power sensor,
        fewer than two samples).
    """
    by_device: dict[str, list[dict]] = defaultdict(list)
    for sample in read_samples(attempt_folder / TELEMETRY_NAME):
        by_device[str(sample["device"])].append(sample)
    results = {d: r for d, s in by_device.items() if (r := _device_energy(s, start, end)) is not None}
    accelerators = {d: r for d, r in results.items() if d != "cpu"}
    counted = accelerators or results
    if not counted:
        return None
    joules = sum(r[0] for r in counted.values())
    seconds = max(r[2] for r in counted.values()) - min(r[1] for r in counted.values())
    source = "counter" if all(r[3] == "counter" for r in counted.values()) else "power"
    return Energy(joules=round(joules, 3), mean_power_w=round(joules / seconds, 3) if seconds > 0 else 0.0,
                  seconds=round(seconds, 3), source=source)
