"""`milabox doctor`: is this machine ready to build and run, and what will telemetry see?"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

from milabox.definitions.vendors import Vendor, all_vendors, get_vendor
from milabox.engine.docker import Engine
from milabox.errors import EngineError
from milabox.images.naming import runtime_tag


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    what: str
    ok: bool
    detail: str


def _devices(vendor: Vendor) -> Check:
    what = f"{vendor.name}: devices"
    if vendor.passthrough.gpu_request:
        try:
            import pynvml
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            names = {pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)}
            detail = f"{count} GPU(s) via NVML: {', '.join(map(str, names)) or '-'}"
            return Check(what, count > 0, detail) if vendor.requires_cuda is None else \
                _driver_cuda(what, count > 0, detail, pynvml.nvmlSystemGetCudaDriverVersion(), vendor.requires_cuda)
        except Exception as e:  # noqa: BLE001 (pynvml raises its NVMLError family or fails to load)
            return Check(what, False, f"NVML unavailable ({type(e).__name__}): no NVIDIA driver on this host")
    if vendor.passthrough.devices:
        missing = [d for d in vendor.passthrough.devices if not os.path.exists(d)]
        present = [d for d in vendor.passthrough.devices if d not in missing]
        detail = (f"present: {', '.join(present)}" if present else "") + \
                 (f"{'; ' if present else ''}missing: {', '.join(missing)}" if missing else "")
        return Check(what, not missing, detail)
    return Check(what, True, f"{os.cpu_count()} CPU core(s)")


def _driver_cuda(what: str, ok: bool, detail: str, driver: int, required: tuple[int, int]) -> Check:
    """The device check, failed where the driver's CUDA is older than the image's.

    ``nvmlSystemGetCudaDriverVersion`` encodes the newest CUDA the driver runs as 1000 * major + 10 * minor
    (13000 is CUDA 13.0; NVML's nvml.h). CUDA 13 images need driver branch R580 or newer and drop GPUs before
    Volta (NVIDIA CUDA 13.0 release notes).
    """
    have = (driver // 1000, driver % 1000 // 10)
    detail += f"; driver runs CUDA up to {have[0]}.{have[1]}"
    if have >= required:
        return Check(what, ok, detail)
    return Check(what, False, f"{detail}, the image needs CUDA {required[0]}.{required[1]}: update the NVIDIA "
                              f"driver (CUDA 13 needs R580 or newer; GPUs before Volta are not supported)")


def _telemetry(vendor: Vendor) -> Check:
    what, backend = f"{vendor.name}: telemetry", vendor.telemetry
    if backend == "nvml":
        ok = importlib.util.find_spec("pynvml") is not None
        return Check(what, ok, "nvidia-ml-py (pynvml) importable" if ok else "pip install nvidia-ml-py")
    if backend == "amdsmi":
        ok = importlib.util.find_spec("amdsmi") is not None
        return Check(what, ok, "amdsmi importable" if ok else "amdsmi not installed (ships with ROCm)")
    if backend == "xpu-smi":
        path = shutil.which("xpu-smi")
        return Check(what, path is not None, path or "xpu-smi not on PATH (Intel XPU Manager)")
    return Check(what, True, f"{backend}: reads /proc, always available")


def checks(vendor_names: list[str]) -> list[Check]:
    """Run every check.

    Args:
        vendor_names: vendors to check (platforms or makers); empty means all.

    Returns:
        The checks, engine first; a failing check is a row, never an exception.
    """
    vendors = [get_vendor(n) for n in vendor_names] if vendor_names else list(all_vendors().values())
    rows = []
    try:
        engine: Engine | None = Engine()
        version = engine.version()
        rows.append(Check("engine", True, f"Docker {version.get('Version')} (API {version.get('ApiVersion')}) "
                                          f"at {engine.base_url}"))
    except EngineError as e:
        engine = None
        rows.append(Check("engine", False, str(e)))
    for vendor in vendors:
        if engine is not None:
            bases = [vendor.base_image] + ([vendor.local_base.tag] if vendor.local_base else [])
            have = [b for b in bases if engine.image(b)]
            hint = (f"`milabox base --vendor {vendor.name}` or pull {vendor.base_image}" if vendor.local_base
                    else f"pull or `docker load` {vendor.base_image}")
            rows.append(Check(f"{vendor.name}: base image", bool(have), have[0] if have else f"missing: {hint}"))
            runtime = engine.image(runtime_tag(vendor))
            rows.append(Check(f"{vendor.name}: runtime image", runtime is not None,
                              f"{runtime_tag(vendor)} {runtime.id[7:19]}" if runtime
                              else f"not built: `milabox build --vendor {vendor.name}`"))
        rows.append(_devices(vendor))
        rows.append(_telemetry(vendor))
    return rows
