"""Device choice, synchronisation and peak memory: the only parts that touch torch (imported lazily).

Without torch installed the runtime still works, on "cpu", so that pure-Python workloads and the
host's unit tests need no torch.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Any

from .precision import tf32_in_effect

DEVICE_TYPES = ("cpu", "cuda", "xpu")


def import_torch(required: bool = False) -> Any:
    """Import torch on first use.

    Args:
        required: raise when torch is missing instead of returning None.

    Returns:
        The torch module, or None when it is not installed and not required.

    Raises:
        ImportError: torch is required but not installed.
    """
    try:
        import torch
    except ImportError:
        if required:
            raise
        return None
    return torch


def _backend(torch: Any, device_type: str) -> Any:
    """``torch.cuda`` or ``torch.xpu`` (the latter is missing from old torch builds)."""
    backend = getattr(torch, device_type, None)
    if backend is None or not hasattr(backend, "is_available"):
        raise RuntimeError(f"this torch ({torch.__version__}) has no {device_type} backend")
    return backend


def resolve_device_type(forced: str | None) -> str:
    """Pick the device type: the forced one, else cuda (ROCm builds answer as cuda), xpu, cpu.

    Args:
        forced: ``MILABOX_DEVICE`` ("cpu", "cuda" or "xpu"), or None/empty to auto-detect.

    Returns:
        "cpu", "cuda" or "xpu".

    Raises:
        ValueError: ``forced`` is not a known device type.
        RuntimeError: the forced accelerator is not available to torch (or torch is missing).
    """
    torch = import_torch()
    if forced and forced.strip():
        kind = forced.strip().lower()
        if kind not in DEVICE_TYPES:
            raise ValueError(f"MILABOX_DEVICE={forced!r}: expected one of {', '.join(DEVICE_TYPES)}")
        if kind != "cpu":
            if torch is None:
                raise RuntimeError(f"MILABOX_DEVICE={kind} but torch is not installed")
            if not _backend(torch, kind).is_available():
                raise RuntimeError(f"MILABOX_DEVICE={kind} but torch.{kind}.is_available() is False")
        return kind
    if torch is None:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    return "cpu"


def make_device(device_type: str) -> Any:
    """The ``torch.device`` to run on; accelerators get an explicit index (``LOCAL_RANK`` or 0).

    An explicit index, made current, keeps synchronisation and memory statistics on the device the
    benchmark actually uses (one process a device under torchrun).

    Args:
        device_type: "cpu", "cuda" or "xpu".

    Returns:
        A torch.device.

    Raises:
        ImportError: torch is not installed.
    """
    torch = import_torch(required=True)
    if device_type == "cpu":
        return torch.device("cpu")
    index = int(os.environ.get("LOCAL_RANK", "0"))
    _backend(torch, device_type).set_device(index)
    return torch.device(device_type, index)


def synchronize(device_type: str) -> None:
    """Wait for the current accelerator's queued work (no-op on cpu), so clocks time real work."""
    if device_type == "cpu":
        return
    _backend(import_torch(required=True), device_type).synchronize()


def peak_memory_mb(device_type: str) -> float:
    """Peak memory in MiB: allocated by torch on the current accelerator, else the process' peak RSS.

    Args:
        device_type: "cpu", "cuda" or "xpu".

    Returns:
        The peak, in MiB (2**20 bytes).
    """
    if device_type != "cpu":
        backend = _backend(import_torch(required=True), device_type)
        return backend.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """CPU cores this process may use (honours cpusets such as ``docker run --cpuset-cpus``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def device_info(device_type: str) -> dict[str, Any]:
    """What the ``meta`` event says about the device.

    Args:
        device_type: "cpu", "cuda" or "xpu".

    Returns:
        ``type``, ``name``, ``count`` and, where known, ``capability``, ``backend``, ``arch``,
        ``memory_mb`` (accelerators) or ``cores`` (cpu); ``tf32``: whether fp32 matmuls run as TF32 as set
        (accelerators; see :func:`milabox_runtime.precision.tf32_in_effect`).
    """
    if device_type == "cpu":
        return {"type": "cpu", "name": cpu_name(), "count": 1, "cores": cpu_cores(), "tf32": False}
    torch = import_torch(required=True)
    backend = _backend(torch, device_type)
    index = backend.current_device()
    info: dict[str, Any] = {"type": device_type, "name": backend.get_device_name(index),
                            "count": backend.device_count()}
    props = backend.get_device_properties(index)
    if device_type == "cuda":
        major, minor = backend.get_device_capability(index)
        info["capability"] = f"{major}.{minor}"
        info["backend"] = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        arch = getattr(props, "gcnArchName", None)  # ROCm only, e.g. "gfx942:sramecc+:xnack-"
        if arch and info["backend"] == "rocm":
            info["arch"] = arch
    total = getattr(props, "total_memory", None)
    if total:
        info["memory_mb"] = round(total / 2**20)
    info["tf32"] = tf32_in_effect(torch, device_type, str(info.get("arch", "")), str(info.get("capability", "")))
    return info
