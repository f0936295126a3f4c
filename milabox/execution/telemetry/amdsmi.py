"""AMD GPUs through the amdsmi Python package (shipped with ROCm).

Field names moved between ROCm releases (``socket_power`` since 7.0, ``current_socket_power`` and
``average_socket_power`` before; ``energy_accumulator`` once ``power``), and unsupported values read
``"N/A"``: every value goes through :func:`~milabox.telemetry.base.number`, which makes those null.
Device ids are HIP ids (the order ROCR_VISIBLE_DEVICES and torch use): ``amdsmi_get_processor_handles()``
is not in that order, so each handle is keyed by ``amdsmi_get_gpu_enumeration_info(h)["hip_id"]`` (ROCm/amdsmi
py-interface/amdsmi_interface.py: keys drm_render, drm_card, hsa_id, hip_id, hip_uuid; added in ROCm 6.4's
AMD SMI 25.3.0, CHANGELOG.md). Where that function is missing, the handle order is used, with a warning.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

from .base import Backend, Unavailable, guarded, number, text


def _first(info: Any, *keys: str) -> float | None:
    """The first key of a result dict that holds a number."""
    if not isinstance(info, dict):
        return None
    for key in keys:
        value = number(info.get(key))
        if value is not None:
            return value
    return None


class AmdSmiBackend(Backend):
    """AMD GPUs.

    Args:
        devices: HIP ids to sample; None or empty: every GPU amdsmi sees.
        on_warning: told when handles cannot be mapped to HIP ids (amdsmi before ROCm 6.4).

    Raises:
        Unavailable: amdsmi is missing, cannot start (no amdgpu driver), or a device is absent.
    """

    name = "amdsmi"

    def __init__(self, devices: Sequence[str] | None = None, on_warning: Callable[[str], None] = lambda m: None):
        try:
            import amdsmi
        except ImportError:
            raise Unavailable("amdsmi is not installed (it ships with ROCm: pip install /opt/rocm/share/amd_smi)") \
                from None
        self.smi = amdsmi
        try:
            amdsmi.amdsmi_init()
            handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception as e:  # noqa: BLE001 (AmdSmiLibraryException and friends, or a broken install)
            why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise Unavailable(f"amdsmi could not start: {why} (no amdgpu driver here)") from None
        by_hip = self._by_hip_id(handles, on_warning)
        ids = list(devices) if devices else sorted(by_hip, key=int)
        bad = [d for d in ids if d not in by_hip]
        if bad or not ids:
            self.close()
            raise Unavailable(f"amdsmi has no GPU {bad[0]!r} (it sees {len(handles)})" if bad else "amdsmi sees no GPU")
        self.handles = {d: by_hip[d] for d in ids}

    def _by_hip_id(self, handles: list[Any], on_warning: Callable[[str], None]) -> dict[str, Any]:
        """Handles by HIP id; by position where amdsmi cannot say (no enumeration info, or ids missing)."""
        ids = [number((self._q("amdsmi_get_gpu_enumeration_info", h) or {}).get("hip_id")) for h in handles]
        if all(i is not None for i in ids) and len(set(ids)) == len(ids):
            return {str(int(i)): h for i, h in zip(ids, handles, strict=True)}  # type: ignore[arg-type]
        if handles:
            on_warning("telemetry: amdsmi gives no HIP id (amdsmi_get_gpu_enumeration_info needs ROCm 6.4+); "
                       "GPUs are numbered in handle order, which may not be ROCR_VISIBLE_DEVICES order")
        return {str(i): h for i, h in enumerate(handles)}

    def _q(self, function: str, *args: Any) -> Any:
        """Call an amdsmi function by name; None when it is missing (older release) or raises (unsupported)."""
        return guarded(getattr(self.smi, function, None), *args)

    def _enum(self, enum: str, *members: str) -> Any:
        """The first member of an amdsmi enum that this release defines (names changed between releases)."""
        kind = getattr(self.smi, enum, None)
        for m in members:
            if hasattr(kind, m):
                return getattr(kind, m)
        return None

    def devices(self) -> tuple[str, ...]:
        return tuple(self.handles)

    def read(self) -> dict[str, dict[str, Any]]:
        hotspot = self._enum("AmdSmiTemperatureType", "HOTSPOT", "JUNCTION")
        edge = self._enum("AmdSmiTemperatureType", "EDGE")
        current = self._enum("AmdSmiTemperatureMetric", "CURRENT")
        gfx = self._enum("AmdSmiClkType", "GFX")
        out = {}
        for d, h in self.handles.items():
            vram = self._q("amdsmi_get_gpu_vram_usage", h)
            temperature = number(self._q("amdsmi_get_temp_metric", h, hotspot, current))
            if temperature is None:
                temperature = number(self._q("amdsmi_get_temp_metric", h, edge, current))
            out[d] = {
                "power_w": _first(self._q("amdsmi_get_power_info", h), "socket_power", "current_socket_power",
                                  "average_socket_power"),
                "energy_j": self._energy(h),
                "util_pct": _first(self._q("amdsmi_get_gpu_activity", h), "gfx_activity"),
                "memory_used_mb": _first(vram, "vram_used"), "memory_total_mb": _first(vram, "vram_total"),
                "temperature_c": temperature,
                "sm_clock_mhz": _first(self._q("amdsmi_get_clock_info", h, gfx), "clk", "cur_clk"),
                "throttle": self._throttle(h),
            }
        return out

    def _energy(self, handle: Any) -> float | None:
        info = self._q("amdsmi_get_energy_count", handle)
        ticks = _first(info, "energy_accumulator", "power")  # the accumulator was called "power" before ROCm 6.1
        resolution = _first(info, "counter_resolution")  # microjoules per tick
        return None if ticks is None or resolution is None else round(ticks * resolution / 1e6, 3)

    def _throttle(self, handle: Any) -> list[str] | None:
        metrics = self._q("amdsmi_get_gpu_metrics_info", handle)
        status = metrics.get("throttle_status") if isinstance(metrics, dict) else None
        if isinstance(status, bool):  # amdsmi 7 (py-interface: _validate_if_max_uint(..., isBool=True))
            return ["throttle_status"] if status else []
        status = number(status)
        if status is None:
            return None
        return [] if status == 0 else [f"throttle_status=0x{int(status):x}"]

    def describe(self) -> dict[str, Any]:
        gfx = self._enum("AmdSmiClkType", "GFX")
        facts: dict[str, Any] = {"rocm": rocm_version(self._q("amdsmi_get_rocm_version")),
                                 "library": _plain(self._q("amdsmi_get_lib_version")), "devices": []}
        for d, h in self.handles.items():
            asic = self._q("amdsmi_get_gpu_asic_info", h) or {}
            board = self._q("amdsmi_get_gpu_board_info", h) or {}
            driver = self._q("amdsmi_get_gpu_driver_info", h) or {}
            vram = self._q("amdsmi_get_gpu_vram_usage", h)
            clock = self._q("amdsmi_get_clock_info", h, gfx)
            fw = self._q("amdsmi_get_fw_info", h) or {}
            facts["devices"].append({
                "id": d, "name": text(asic.get("market_name")) or text(board.get("product_name")),
                "uuid": text(self._q("amdsmi_get_gpu_device_uuid", h)),
                "pci_bus_id": text(self._q("amdsmi_get_gpu_device_bdf", h)),
                "driver": text(driver.get("driver_version")),
                "firmware": {text(_plain(f.get("fw_name") or f.get("fw_id"))): text(f.get("fw_version"))
                             for f in fw.get("fw_list", []) if isinstance(f, dict)},
                "vbios": text((self._q("amdsmi_get_gpu_vbios_info", h) or {}).get("version")),
                "memory_total_mb": _first(vram, "vram_total"),
                "power_cap": _plain(self._q("amdsmi_get_power_cap_info", h)),
                "max_gfx_clock_mhz": _first(clock, "max_clk"),
            })
        return facts

    def close(self) -> None:
        self._q("amdsmi_shut_down")


def rocm_version(value: Any) -> str | None:
    """The ROCm version string of ``amdsmi_get_rocm_version()``.

    Args:
        value: its result: ``(ok, "6.4.1")`` (ROCm/amdsmi amdsmi_cli/amdsmi_commands.py unpacks
            ``rocm_lib_status, rocm_version_str``), or a bare string from older releases.

    Returns:
        The string; None when the library says it could not read it.
    """
    if isinstance(value, (tuple, list)):
        return text(value[1]) if len(value) == 2 and value[0] is True else None
    return text(value)


def _plain(value: Any) -> Any:
    """A library value as JSON-ready data (enums by name, nested dicts and lists kept, the rest as text)."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
