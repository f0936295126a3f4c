"""Energy of a benchmark from the power its host sampled while the containers ran (``telemetry.jsonl``).

Each successful attempt with telemetry contributes the energy and mean power of its measured steps
(warm-up and start-up excluded), the same work as its rate; ``benchmark_energy`` averages them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from milabox.reporting.attempt_energy import attempt_energy
from milabox.rundir.layout import TELEMETRY_NAME
from milabox.rundir.model import AttemptResult


@dataclass
class BenchmarkEnergy:
    """Energy of a benchmark where the host sampled power while its containers ran.

    All three describe the measured steps (warm-up and start-up excluded), the same work as the rate;
    an attempt whose samples do not cover that window counts with its whole sampled span instead.

    Attributes:
        energy_kj: energy of the measured steps of one attempt (mean over attempts with telemetry).
        mean_power_w: mean power over the measured steps (mean over attempts).
        items_per_j: perf / mean_power_w: the unit's items per joule (TFLOP/J for TFLOPS).
        attempts: successful attempts that had telemetry.
        source: the telemetry's own description of where the energy came from.
    """

    energy_kj: float | None
    mean_power_w: float | None
    items_per_j: float | None
    attempts: int
    source: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON form (docs/report-schema.md)."""
        return {"energy_kj": self.energy_kj, "mean_power_w": self.mean_power_w, "items_per_j": self.items_per_j,
                "attempts": self.attempts, "source": self.source}


def energy_reader() -> Callable[..., object] | None:
    """The per-attempt energy reader (:func:`milabox.reporting.attempt_energy.attempt_energy`).

    Returns:
        The reader; a test may stand in another.

    Raises:
        Nothing.
    """
    return attempt_energy


def benchmark_energy(ok: list[AttemptResult], perf: float | None,
                     energy_of: Callable[..., object]) -> BenchmarkEnergy | None:
    """A benchmark's energy: the mean over its successful attempts that have telemetry.

    Args:
        ok: the benchmark's successful attempts with a rate.
        perf: the benchmark's mean per-device rate (for ``items_per_j``), or None.
        energy_of: what ``energy_reader`` returned.

    Returns:
        The BenchmarkEnergy, or None when no attempt has usable telemetry.

    Raises:
        Nothing.
    """
    joules: list[float] = []
    powers: list[float] = []
    sources: list[str] = []
    for attempt in ok:
        if not (attempt.path / TELEMETRY_NAME).is_file():
            continue  # the cheap check first: reports read thousands of attempts
        window = attempt.measured_window
        # The measured steps only (warm-up and start-up excluded): the same work as the rate.
        energy = energy_of(Path(attempt.path), *window) if window else None
        if energy is None:
            energy = energy_of(Path(attempt.path))  # samples too sparse for the window: the whole attempt
        if energy is None:
            continue
        if _finite(energy.joules):
            joules.append(energy.joules)
        if _finite(energy.mean_power_w) and energy.mean_power_w > 0:
            powers.append(energy.mean_power_w)
        if energy.source:
            sources.append(str(energy.source))
    if not joules and not powers:
        return None
    power = statistics.fmean(powers) if powers else None
    return BenchmarkEnergy(
        energy_kj=statistics.fmean(joules) / 1000 if joules else None,
        mean_power_w=power,
        items_per_j=perf / power if perf is not None and power else None,
        attempts=max(len(joules), len(powers)),
        source=", ".join(dict.fromkeys(sources)) or None,
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

