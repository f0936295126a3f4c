"""The host CPU through psutil (utilization, memory, clock, temperature) and RAPL energy counters.

RAPL (``/sys/class/powercap/intel-rapl:N/energy_uj``, also used by AMD CPUs) is a cumulative energy
counter per CPU package that wraps around at ``max_energy_range_uj``. Since Linux 5.10 it is readable
by root only; where it cannot be read, power and energy are null.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milabox.rundir.layout import HOST_DEVICE

from .base import MIB, Backend, Unavailable, number

POWERCAP = Path("/sys/class/powercap")
_TOP_DOMAIN = re.compile(r"^intel-rapl:\d+$")  # packages (and psys); subdomains are intel-rapl:N:M


@dataclass
class _Domain:
    path: Path
    name: str
    max_range_uj: int
    last_uj: int | None = None
    total_uj: int = 0


class Rapl:
    """Cumulative energy of the CPU packages from RAPL, wrap-around handled.

    Args:
        root: the powercap folder (``/sys/class/powercap``; tests point it at a folder of the same layout).
    """

    def __init__(self, root: Path = POWERCAP):
        self.domains: list[_Domain] = []
        self.reason = ""
        try:
            tops = sorted(p for p in root.iterdir() if _TOP_DOMAIN.match(p.name))
        except OSError:
            tops = []
        for top in tops:
            try:
                name = (top / "name").read_text().strip()
                max_range = int((top / "max_energy_range_uj").read_text())
                int((top / "energy_uj").read_text())
            except PermissionError:
                self.reason = f"{top / 'energy_uj'} is not readable (root only since Linux 5.10)"
                continue
            except (OSError, ValueError):
                continue
            self.domains.append(_Domain(top, name, max_range))
        # psys covers the whole SoC, packages included: summing both would count the packages twice.
        packages = [d for d in self.domains if d.name.startswith("package")]
        self.domains = packages or self.domains
        if not self.domains and not self.reason:
            self.reason = f"no RAPL energy counters under {root}"

    @property
    def available(self) -> bool:
        """Whether at least one counter can be read."""
        return bool(self.domains)

    def energy_j(self) -> float | None:
        """Joules consumed by all packages since the first call (a counter that never wraps), or None."""
        if not self.domains:
            return None
        for d in self.domains:
            try:
                now = int((d.path / "energy_uj").read_text())
            except (OSError, ValueError):
                return None
            if d.last_uj is not None:
                # The hardware counter restarts from 0 after max_energy_range_uj.
                d.total_uj += now - d.last_uj if now >= d.last_uj else now + d.max_range_uj - d.last_uj
            d.last_uj = now
        return sum(d.total_uj for d in self.domains) / 1e6

    def describe(self) -> dict[str, Any]:
        """Domains and their power limits (``constraint_0_power_limit_uw``) where readable."""
        out = {}
        for d in self.domains:
            try:
                limit = number((d.path / "constraint_0_power_limit_uw").read_text(), 1e-6)
            except OSError:
                limit = None
            out[d.name] = {"power_limit_w": limit}
        return out


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CpuBackend(Backend):
    """The host CPU as one device, ``"cpu"``.

    Args:
        rapl_root: the powercap folder to read energy from.

    Raises:
        Unavailable: psutil is not installed.
    """

    name = "psutil"

    def __init__(self, rapl_root: Path = POWERCAP):
        try:
            import psutil
        except ImportError:
            raise Unavailable("psutil is not installed (pip install psutil)") from None
        self.psutil = psutil
        self.rapl = Rapl(rapl_root)
        self._last: tuple[float, float] | None = None  # (monotonic time, joules) of the previous reading

    def devices(self) -> tuple[str, ...]:
        return (HOST_DEVICE,)

    def start(self, interval_s: float) -> None:
        self.psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self._last = None

    def read(self) -> dict[str, dict[str, Any]]:
        ps = self.psutil
        mem = ps.virtual_memory()
        freq = ps.cpu_freq() if hasattr(ps, "cpu_freq") else None
        energy, now, power = self.rapl.energy_j(), time.monotonic(), None
        if energy is not None and self._last is not None and now > self._last[0]:
            power = (energy - self._last[1]) / (now - self._last[0])
        self._last = (now, energy) if energy is not None else None
        return {HOST_DEVICE: {
            "power_w": number(power), "energy_j": number(energy),
            "util_pct": number(ps.cpu_percent(interval=None)),
            "memory_used_mb": number(mem.total - mem.available, 1 / MIB), "memory_total_mb": number(mem.total, 1 / MIB),
            "temperature_c": _temperature(ps), "sm_clock_mhz": number(freq.current) if freq else None,
            "throttle": None,
        }}

    def describe(self) -> dict[str, Any]:
        ps = self.psutil
        freq = ps.cpu_freq() if hasattr(ps, "cpu_freq") else None
        return {"devices": [{
            "id": HOST_DEVICE, "name": cpu_model(), "cores_logical": os.cpu_count(),
            "cores_physical": ps.cpu_count(logical=False), "memory_total_mb": number(ps.virtual_memory().total, 1 / MIB),
            "min_clock_mhz": number(freq.min) if freq and freq.min else None,
            "max_clock_mhz": number(freq.max) if freq and freq.max else None,
            "rapl": self.rapl.describe() if self.rapl.available else None,
        }]}


def _temperature(ps: Any) -> float | None:
    """The CPU package temperature where the host exposes one (coretemp, k10temp), else None."""
    reader = getattr(ps, "sensors_temperatures", None)
    if reader is None:
        return None
    try:
        sensors = reader()
    except (OSError, RuntimeError):
        return None
    for chip in ("coretemp", "k10temp", "zenpower", "cpu_thermal"):
        readings = sensors.get(chip)
        if readings:
            return number(max(r.current for r in readings))
    return None
