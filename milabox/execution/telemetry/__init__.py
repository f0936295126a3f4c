"""Telemetry sampled on the host while each container runs: power, energy, utilization, memory, clocks.

The vendor's data file names its backend (``telemetry`` in ``milabox/vendors/*.toml``): ``nvml``,
``amdsmi``, ``xpu-smi`` or ``psutil``. The host CPU (``psutil``) is sampled beside any GPU backend.
A backend whose library or device is missing gives one warning and no series; the run goes on.

Typical use (what :func:`milabox.run.run` does)::

    telemetry = Telemetry.open("nvml", devices=("0", "1"))   # once per run
    telemetry.sample_idle(run_dir / IDLE_NAME)               # the idle baseline, before the first attempt
    with telemetry.sampler(attempt_folder / TELEMETRY_NAME, interval_s=1.0, devices=("0",)):
        ...                                                  # the container runs
    telemetry.close()
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import FIELDS, Backend, TelemetryWarning, Unavailable
from .sampler import Sampler

__all__ = ["BACKENDS", "FIELDS", "Backend", "Sampler", "Telemetry", "TelemetryWarning"]

#: Backend names a vendor file may use.
BACKENDS = ("nvml", "amdsmi", "xpu-smi", "psutil")

#: How long ``Telemetry.sample_idle`` samples the idle devices before the first attempt, in seconds.
IDLE_SECONDS = 5.0


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _has_power(line: str) -> bool:
    try:
        sample = json.loads(line)
    except ValueError:
        return False
    return isinstance(sample, dict) and isinstance(sample.get("power_w") or sample.get("energy_j"), (int, float))


def _warn(message: str) -> None:
    warnings.warn(message, TelemetryWarning, stacklevel=3)


def _open_backend(name: str, devices: Sequence[str] | None, warn: Callable[[str], None]) -> Backend:
    if name == "nvml":
        from .nvml import NvmlBackend
        return NvmlBackend(devices)
    if name == "amdsmi":
        from .amdsmi import AmdSmiBackend
        return AmdSmiBackend(devices, on_warning=warn)
    if name == "xpu-smi":
        from .xpusmi import XpuSmiBackend
        return XpuSmiBackend(devices, on_warning=warn)
    raise Unavailable(f"unknown telemetry backend {name!r} (known: {', '.join(BACKENDS)})")


class Telemetry:
    """The open backends of one run, and the warnings they gave (each message once).

    Args:
        backends: open backends, the device backend first.
        name: the vendor's backend name.
        on_warning: where warnings go.
    """

    def __init__(self, backends: Sequence[Backend], name: str = "psutil",
                 on_warning: Callable[[str], None] = _warn):
        self.backends, self.name = list(backends), name
        self._on_warning = on_warning
        self.warned: list[str] = []

    @classmethod
    def open(cls, name: str, devices: Sequence[str] | None = None,
             on_warning: Callable[[str], None] = _warn) -> Telemetry:
        """Open the vendor's backend and the host CPU's; what cannot open becomes one warning.

        Args:
            name: ``nvml``, ``amdsmi``, ``xpu-smi`` or ``psutil``.
            devices: device ids to sample (``--devices``); None: every device the backend sees.
            on_warning: called with each warning once (default: ``warnings.warn`` with TelemetryWarning,
                which the CLI prints as one line).

        Returns:
            The telemetry, possibly with no backend at all (then sampling writes nothing).
        """
        telemetry = cls([], name, on_warning)
        if name != "psutil":
            try:
                telemetry.backends.append(_open_backend(name, devices, telemetry.warn))
            except Unavailable as e:
                telemetry.warn(f"telemetry: {e}; running without {name} series (power, energy, utilization)")
        try:
            from .cpu import CpuBackend
            cpu = CpuBackend()
            telemetry.backends.append(cpu)
            if name == "psutil" and not cpu.rapl.available:
                telemetry.warn(f"telemetry: CPU power and energy are not recorded: {cpu.rapl.reason}")
        except Unavailable as e:
            telemetry.warn(f"telemetry: {e}; running without the host CPU series")
        return telemetry

    def warn(self, message: str) -> None:
        """Pass a warning on, once per distinct message for the whole run."""
        if message not in self.warned:
            self.warned.append(message)
            self._on_warning(message)

    def sampler(self, path: Path, interval_s: float = 1.0, devices: Sequence[str] | None = None) -> Sampler:
        """A sampler for one attempt (start and stop it around the container, or use it as a context manager).

        Args:
            path: the attempt's ``telemetry.jsonl``.
            interval_s: seconds between samples; 0 or less: a sampler that does nothing.
            devices: the attempt's device ids (None: all of the run's).
        """
        return Sampler(self.backends if interval_s > 0 else [], path, interval_s if interval_s > 0 else 1.0,
                       devices, self.warn)

    def sample_idle(self, path: Path, seconds: float = IDLE_SECONDS, interval_s: float = 1.0) -> bool:
        """Sample every device of the run while nothing runs, for the report's idle power and energy above idle.

        Call it once, before the first attempt. A resumed run keeps the baseline it has.

        Args:
            path: the run's ``idle.jsonl`` (milabox.rundir.layout.IDLE_NAME).
            seconds: how long to sample (default ``IDLE_SECONDS``); 0 or less: nothing is sampled.
            interval_s: seconds between samples (default 1.0: the attempts' default); 0 or less: nothing is
                sampled (telemetry is off). One sample is also taken at the start and one at the end.

        Returns:
            Whether it sampled (False: telemetry off, no backend, or the file already exists).
        """
        if seconds <= 0 or interval_s <= 0 or not self.backends or path.exists():
            return False
        with Sampler(self.backends, path, min(interval_s, seconds), None, self.warn):
            time.sleep(min(interval_s, seconds))
            # Only power makes an idle baseline: where no device reports any (a CPU without RAPL), stop at once
            # rather than make every run wait for nothing.
            if any(_has_power(line) for line in _lines(path)):
                time.sleep(max(0.0, seconds - interval_s))
        return True

    def describe(self) -> dict[str, Any]:
        """Static facts of every backend, for provenance: ``{backend name: facts}``."""
        facts = {}
        for backend in self.backends:
            try:
                facts[backend.name] = backend.describe()
            except Exception as e:  # noqa: BLE001 (provenance is best effort; a failing library must not stop a run)
                facts[backend.name] = {"error": str(e)[:200]}
        return facts

    def close(self) -> None:
        """Release every backend's library."""
        for backend in self.backends:
            try:
                backend.close()
            except Exception:  # noqa: BLE001,S110 (closing is best effort at the end of a run)
                pass
        self.backends = []
