"""Energy of a benchmark from the power its host sampled while the containers ran (``telemetry.jsonl``).

Each replicate with telemetry (a successful attempt, or the successful attempts of a batch that ran together)
contributes the energy and mean power of its measured steps (warm-up and start-up excluded), the same work as
its rate, summed over the devices it ran on; ``benchmark_energy`` averages them. So items per joule is the
node's items over the node's joules.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from milabox.reporting.attempt_energy import attempt_devices, batch_energy, net_joules
from milabox.rundir.layout import TELEMETRY_NAME
from milabox.rundir.model import AttemptResult


@dataclass
class BenchmarkEnergy:
    """Energy of a benchmark where the host sampled power while its containers ran.

    All describe the measured steps (warm-up and start-up excluded), the same work as the rate, on the
    devices the replicate ran on; an attempt whose samples do not cover that window counts with its whole
    sampled span instead.

    Attributes:
        energy_kj: energy of the measured steps of one replicate (mean over replicates with telemetry).
        mean_power_w: mean power over the measured steps (mean over replicates).
        items_per_j: perf / mean_power_w: the unit's items per joule (TFLOP/J for TFLOPS).
        attempts: replicates (attempts, or batches) that had telemetry.
        source: the telemetry's own description of where the energy came from.
        net_energy_kj: energy_kj less each device's idle power over its window (``idle.jsonl``); None without it.
    """

    energy_kj: float | None
    mean_power_w: float | None
    items_per_j: float | None
    attempts: int
    source: str | None = None
    net_energy_kj: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON form (docs/report-schema.md)."""
        return {"energy_kj": self.energy_kj, "mean_power_w": self.mean_power_w, "items_per_j": self.items_per_j,
                "attempts": self.attempts, "source": self.source, "net_energy_kj": self.net_energy_kj}


def benchmark_energy(groups: Sequence[Sequence[AttemptResult]], perf: float | None,
                     idle: dict[str, float] | None = None) -> BenchmarkEnergy | None:
    """A benchmark's energy: the mean over its replicates (an attempt, or a batch that ran together) with telemetry.

    Args:
        groups: the successful attempts of each replicate (``milabox.reporting.batches``).
        perf: the benchmark's perf, the node's rate for batches (for ``items_per_j``), or None.
        idle: each device's idle power (``idle_power``), for ``net_energy_kj``; None or {}: no net energy.

    Returns:
        The BenchmarkEnergy, or None when no replicate has usable telemetry.

    Raises:
        Nothing.
    """
    joules: list[float] = []
    nets: list[float] = []
    powers: list[float] = []
    sources: list[str] = []
    for group in groups:
        # The cheap check first: reports read thousands of attempts.
        parts = [(Path(a.path), a.measured_window, attempt_devices(a.record.device)) for a in group
                 if (a.path / TELEMETRY_NAME).is_file()]
        energy = batch_energy(parts) if parts else None
        if energy is None:
            continue
        if _finite(energy.joules):
            joules.append(energy.joules)
            net = net_joules(energy, idle) if idle else None
            if net is not None:
                nets.append(net)
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
        net_energy_kj=statistics.fmean(nets) / 1000 if nets and len(nets) == len(joules) else None,
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

