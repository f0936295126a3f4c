"""JAX's side of the runtime: device choice, waiting for a step's work, device facts and peak memory.

Used by a :class:`~milabox_runtime.run.Run` made with ``framework="jax"`` (the benchmarks of a ``framework = "jax"``
group). jax is imported on first use, never at import time. JAX dispatches asynchronously: a jitted call returns
arrays whose values are still being computed, so a step's clock must wait for them (``jax.block_until_ready`` on
what the step returns, handed to ``Run.ready``) before it is read; torch's ``synchronize`` plays no part.
"""

from __future__ import annotations

import os
from typing import Any

from . import device as _dev

#: What a benchmark's workload is written in (the host's ``framework`` field); the first is the default.
FRAMEWORKS = ("torch", "jax")
# jax's platform names -> the runtime's device types (ROCm GPUs answer as "gpu" too, as torch's answer as "cuda").
_TYPES = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "rocm": "cuda"}


def check_framework(framework: str | None) -> str:
    """The framework, ``torch`` when None or empty.

    Raises:
        ValueError: not one of :data:`FRAMEWORKS`.
    """
    value = (framework or FRAMEWORKS[0]).strip().lower()
    if value not in FRAMEWORKS:
        raise ValueError(f"framework {framework!r}: expected one of {', '.join(FRAMEWORKS)}")
    return value


def import_jax(required: bool = False) -> Any:
    """Import jax on first use; None when it is missing and not required.

    Raises:
        ImportError: jax is required but not installed.
    """
    try:
        import jax
    except ImportError:
        if required:
            raise
        return None
    return jax


def resolve_device_type(forced: str | None) -> str:
    """The device type jax runs on: ``cpu``, or ``cuda`` for a GPU (NVIDIA or AMD).

    Args:
        forced: ``MILABOX_DEVICE``; ``cpu`` makes jax use the CPU (``JAX_PLATFORMS=cpu``, set before jax starts).

    Raises:
        ValueError: ``forced`` is not a known device type.
        RuntimeError: the forced accelerator is not jax's default backend.
    """
    kind = (forced or "").strip().lower()
    if kind and kind not in _dev.DEVICE_TYPES:
        raise ValueError(f"MILABOX_DEVICE={forced!r}: expected one of {', '.join(_dev.DEVICE_TYPES)}")
    if kind == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    found = _TYPES.get(str(import_jax(required=True).default_backend()), "cpu")
    if kind and kind != found:
        raise RuntimeError(f"MILABOX_DEVICE={kind} but jax's default backend is {found}")
    return found


def first_device() -> Any:
    """The jax device a single-process benchmark runs on (``LOCAL_RANK``'s local device in a job of several)."""
    jax = import_jax(required=True)
    devices = jax.local_devices()
    return devices[int(os.environ.get("LOCAL_RANK", "0")) % len(devices)]


def block_until_ready(out: Any) -> Any:
    """Wait until every array in ``out`` (any pytree) is computed; returns ``out``."""
    return import_jax(required=True).block_until_ready(out)


def version() -> str | None:
    """jax's version, or None when it is not installed."""
    jax = import_jax()
    return None if jax is None else str(jax.__version__)


def device_info(device_type: str) -> dict[str, Any]:
    """What the ``meta`` event says about jax's device: ``type``, ``name`` (jax's device kind), ``count`` (local
    devices), ``platform``, and ``cores`` (cpu) or ``memory_mb`` (where jax reports a limit); ``tf32`` False (jax's
    fp32 matmuls are left at its default precision)."""
    jax = import_jax(required=True)
    devices = jax.local_devices()
    first = devices[0]
    info: dict[str, Any] = {"type": device_type, "name": str(getattr(first, "device_kind", first.platform)),
                            "count": len(devices), "platform": str(first.platform)}
    if device_type == "cpu":
        info.update(name=_dev.cpu_name(), count=1, cores=_dev.cpu_cores())
    else:
        limit = (_stats(first) or {}).get("bytes_limit")
        if limit:
            info["memory_mb"] = round(limit / 2**20)
    info["tf32"] = False
    return info


def _stats(device: Any) -> dict[str, Any] | None:
    try:
        return device.memory_stats()
    except Exception:  # noqa: BLE001 - CPU devices and some plugins report none
        return None


def peak_memory_mb(device_type: str) -> float:
    """Peak memory in MiB: jax's peak bytes in use on the device (accelerators), else the process' peak RSS."""
    if device_type != "cpu":
        peak = (_stats(first_device()) or {}).get("peak_bytes_in_use")
        if peak is not None:
            return peak / 2**20
    return _dev.peak_memory_mb("cpu")
