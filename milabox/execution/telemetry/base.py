"""What every telemetry backend shares: the sample fields, the backend interface, safe value conversion.

A backend reads one vendor's devices (NVML, amdsmi, xpu-smi, or the host CPU through psutil). Each
sample is a flat dict of :data:`FIELDS`; a value the hardware or library cannot give is ``None``
(JSON null), never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

#: The name of the samples file in each attempt folder.

#: Fields of every sample besides ``time``, ``device`` and ``backend``, in the order they are written.
FIELDS = ("power_w", "energy_j", "util_pct", "memory_used_mb", "memory_total_mb", "temperature_c",
          "sm_clock_mhz", "throttle")

MIB = 2**20


class TelemetryWarning(UserWarning):
    """A telemetry series is missing (library or device absent); the run goes on without it."""


class Unavailable(Exception):  # a reason, not a failure: it becomes one warning and never escapes
    """A backend cannot sample on this host; ``str()`` says why in one line."""


class Backend:
    """One source of samples. Opened once per run, started and stopped around each container.

    Subclasses set ``name`` and implement :meth:`read`; the other methods have harmless defaults.
    """

    name = ""

    def devices(self) -> tuple[str, ...]:
        """The device labels this backend reports (``"0"``, ``"1"``... or ``"cpu"``)."""
        raise NotImplementedError

    def start(self, interval_s: float) -> None:
        """Prepare for an attempt's samples, taken every ``interval_s`` (prime counters, start a streaming tool)."""

    def read(self) -> dict[str, dict[str, Any]]:
        """One reading of every device: label -> {field: value}; fields left out are written as null."""
        raise NotImplementedError

    def stop(self) -> None:
        """End an attempt's sampling (stop a streaming tool)."""

    def describe(self) -> dict[str, Any]:
        """Static facts for provenance: per device model, driver, firmware, power limit, clocks where readable."""
        return {}

    def close(self) -> None:
        """Release the vendor library at the end of the run."""


def number(value: Any, scale: float = 1.0) -> float | None:
    """A finite number from a library value, else None (``"N/A"``, empty, NaN, a missing key).

    Args:
        value: what the library returned (int, float, numeric string, ``"N/A"``...).
        scale: multiplied in, e.g. 1e-3 for mW to W.

    Returns:
        The scaled value rounded to 3 decimals, or None.
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value) * scale
    except (TypeError, ValueError):
        return None
    return round(x, 3) if math.isfinite(x) else None


def guarded(read: Callable[..., Any], *args: Any) -> Any:
    """Call a vendor library and return its answer, or None when it raises.

    Vendor libraries signal "not supported on this device" with their own exception families
    (``NVMLError``, ``AmdSmiException``...), so any exception here means "this value is unreadable".
    """
    try:
        return read(*args)
    except Exception:  # noqa: BLE001 (see above: each library has its own error classes)
        return None


def text(value: Any) -> str | None:
    """A library string (bytes or str) as str, None when empty or unreadable."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if value is None:
        return None
    value = str(value).strip()
    return value or None
