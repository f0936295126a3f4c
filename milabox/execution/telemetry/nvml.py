"""NVIDIA GPUs through NVML (nvidia-ml-py, imported as ``pynvml``).

Device ids are NVML indices (the order ``nvidia-smi`` and the container toolkit use) or GPU UUIDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import MIB, Backend, Unavailable, guarded, number, text

# NVML's clock-event (formerly "throttle") reason bits, by the constant names nvidia-ml-py defines.
_REASONS = (
    ("GpuIdle", "gpu_idle"), ("ApplicationsClocksSetting", "applications_clocks_setting"),
    ("SwPowerCap", "sw_power_cap"), ("HwSlowdown", "hw_slowdown"), ("SyncBoost", "sync_boost"),
    ("SwThermalSlowdown", "sw_thermal_slowdown"), ("HwThermalSlowdown", "hw_thermal_slowdown"),
    ("HwPowerBrakeSlowdown", "hw_power_brake_slowdown"), ("DisplayClockSetting", "display_clock_setting"),
)


# NVML enum values (nvml.h): stable across releases.
_TEMPERATURE_GPU, _CLOCK_SM, _CLOCK_MEM = 0, 1, 2


class NvmlBackend(Backend):
    """NVIDIA GPUs.

    Args:
        devices: NVML indices or UUIDs to sample; None or empty: every GPU NVML sees.

    Raises:
        Unavailable: nvidia-ml-py is missing, NVML cannot start (no driver), or a device is absent.
    """

    name = "nvml"

    def __init__(self, devices: Sequence[str] | None = None):
        try:
            import pynvml
        except ImportError:
            raise Unavailable("nvidia-ml-py (pynvml) is not installed (pip install nvidia-ml-py)") from None
        self.nv = nv = pynvml
        try:
            nv.nvmlInit()
        except Exception as e:  # noqa: BLE001 (NVMLError_LibraryNotFound, _DriverNotLoaded... or a broken install)
            raise Unavailable(f"NVML could not start: {_why(e)} (no NVIDIA driver here)") from None
        try:
            count = self._q("nvmlDeviceGetCount") or 0
            ids = list(devices) if devices else [str(i) for i in range(count)]
            self.handles = {}
            for d in ids:
                handle = self._q("nvmlDeviceGetHandleByIndex", int(d)) if d.isdigit() else \
                    self._q("nvmlDeviceGetHandleByUUID", d)
                if handle is None:
                    raise Unavailable(f"NVML has no GPU {d!r} (it sees {count})")
                self.handles[d] = handle
            if not self.handles:
                raise Unavailable("NVML sees no GPU")
        except Unavailable:
            self.close()
            raise

    def devices(self) -> tuple[str, ...]:
        return tuple(self.handles)

    def read(self) -> dict[str, dict[str, Any]]:
        out = {}
        for d, h in self.handles.items():
            mem = self._q("nvmlDeviceGetMemoryInfo", h)
            util = self._q("nvmlDeviceGetUtilizationRates", h)
            out[d] = {
                "power_w": number(self._q("nvmlDeviceGetPowerUsage", h), 1e-3),
                "energy_j": number(self._q("nvmlDeviceGetTotalEnergyConsumption", h), 1e-3),
                "util_pct": number(getattr(util, "gpu", None)),
                "memory_used_mb": number(getattr(mem, "used", None), 1 / MIB),
                "memory_total_mb": number(getattr(mem, "total", None), 1 / MIB),
                "temperature_c": number(self._q("nvmlDeviceGetTemperature", h, _TEMPERATURE_GPU)),
                "sm_clock_mhz": number(self._q("nvmlDeviceGetClockInfo", h, _CLOCK_SM)),
                "throttle": self._reasons(h),
            }
        return out

    def _reasons(self, handle: Any) -> list[str] | None:
        nv = self.nv
        # Renamed "clocks event reasons" in recent drivers; the older name stays as a deprecated alias.
        getter = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        mask = guarded(getter, handle) if getter else None
        if not isinstance(mask, int):
            return None
        reasons = []
        for suffix, label in _REASONS:
            bit = getattr(nv, f"nvmlClocksEventReason{suffix}", None) or getattr(nv, f"nvmlClocksThrottleReason{suffix}",
                                                                                 None)
            if bit and mask & bit:
                reasons.append(label)
        return reasons

    def describe(self) -> dict[str, Any]:
        cuda = self._q("nvmlSystemGetCudaDriverVersion")
        facts: dict[str, Any] = {
            "driver": text(self._q("nvmlSystemGetDriverVersion")),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None,
            "nvml": text(self._q("nvmlSystemGetNVMLVersion")),
            "count_visible": self._q("nvmlDeviceGetCount"), "devices": [],
        }
        for d, h in self.handles.items():
            mem = self._q("nvmlDeviceGetMemoryInfo", h)
            cc = self._q("nvmlDeviceGetCudaComputeCapability", h)
            facts["devices"].append({
                "id": d, "name": text(self._q("nvmlDeviceGetName", h)), "uuid": text(self._q("nvmlDeviceGetUUID", h)),
                "pci_bus_id": text(getattr(self._q("nvmlDeviceGetPciInfo", h), "busId", None)),
                "firmware_vbios": text(self._q("nvmlDeviceGetVbiosVersion", h)),
                "compute_capability": ".".join(map(str, cc)) if isinstance(cc, tuple) else None,
                "memory_total_mb": number(getattr(mem, "total", None), 1 / MIB),
                "power_limit_w": number(self._q("nvmlDeviceGetPowerManagementLimit", h), 1e-3),
                "enforced_power_limit_w": number(self._q("nvmlDeviceGetEnforcedPowerLimit", h), 1e-3),
                "default_power_limit_w": number(self._q("nvmlDeviceGetPowerManagementDefaultLimit", h), 1e-3),
                "max_sm_clock_mhz": number(self._q("nvmlDeviceGetMaxClockInfo", h, _CLOCK_SM)),
                "max_memory_clock_mhz": number(self._q("nvmlDeviceGetMaxClockInfo", h, _CLOCK_MEM)),
                "applications_sm_clock_mhz": number(self._q("nvmlDeviceGetApplicationsClock", h, _CLOCK_SM)),
                "persistence_mode": self._q("nvmlDeviceGetPersistenceMode", h),
            })
        return facts

    def _q(self, function: str, *args: Any) -> Any:
        """Call an NVML function by name; None when it is missing (older library) or raises (unsupported)."""
        return guarded(getattr(self.nv, function, None), *args)

    def close(self) -> None:
        self._q("nvmlShutdown")


def _why(e: Exception) -> str:
    return (str(e) or type(e).__name__).splitlines()[0][:160]
