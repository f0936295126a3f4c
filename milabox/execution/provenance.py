"""Provenance: facts about this milabox (image labels, manifests) and one record per run (``provenance.json``).

A ``--runtime native`` run records its Python environment (interpreter, torch build, ``pip freeze``) in place of
the engine and images.

The run record holds what a reader needs to trust and reproduce the numbers: host CPU, memory, OS and
kernel; devices (model, count, driver, firmware, power limit and clocks where the telemetry backend can
read them); each image's id, digests, torch build and package list (read from the image without
running it); milabox version and commit; the exact command; each attempt's container request and an
equivalent ``docker run`` line. Reading a record back and showing it is milabox.reporting.provenance.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from milabox import __version__
from milabox.errors import EngineError
from milabox.origin import source_commit

if TYPE_CHECKING:
    from milabox.engine import ContainerRequest, Engine
    from milabox.execution.native import ProcessRequest
    from milabox.execution.telemetry import Telemetry

PROVENANCE_FORMAT = 1
#: ``pip freeze`` of the runtime image, inherited by every benchmark image (images/runtime.Dockerfile.j2).
PACKAGES_PATH = "/opt/milabox/runtime-constraints.txt"


def host_details() -> dict[str, Any]:
    """The host: name, CPU model and cores, memory, OS, kernel, architecture, Python.

    Returns:
        JSON-ready facts (None where unreadable).
    """
    from milabox.execution.telemetry.cpu import cpu_model
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        os_name = None
    try:
        import psutil
        memory_mb: float | None = round(psutil.virtual_memory().total / 2**20, 1)
        physical = psutil.cpu_count(logical=False)
    except ImportError:
        memory_mb, physical = None, None
    return {"hostname": socket.gethostname(), "cpu_model": cpu_model(), "cpu_cores_logical": os.cpu_count(),
            "cpu_cores_physical": physical, "memory_total_mb": memory_mb,
            "os": os_name or f"{platform.system()} {platform.release()}", "kernel": platform.release(),
            "kernel_build": platform.version(), "arch": platform.machine(), "python": platform.python_version()}


def _engine_facts(engine: Engine) -> dict[str, Any]:
    try:
        v = engine.version()
    except Exception as e:  # noqa: BLE001 (docker-py and requests errors alike: provenance is best effort)
        return {"error": str(e)[:200]}
    return {"version": v.get("Version"), "api_version": v.get("ApiVersion"), "os": v.get("Os"),
            "arch": v.get("Arch"), "kernel": v.get("KernelVersion")}


def image_facts(engine: Engine, ref: str, package_cache: dict[str, list[str] | None] | None = None) -> dict[str, Any]:
    """An image's id, digests, milabox and OCI labels, torch build and package list.

    Args:
        engine: the engine.
        ref: the image (tag, or ``name@sha256:...`` after a push or pull).
        package_cache: package lists already read, by the image's runtime image id (benchmark images of one
            runtime share its list: they add only code).

    Returns:
        JSON-ready facts; ``packages`` is the image's ``pip freeze`` (None when unreadable).
    """
    try:
        info = engine.image(ref)
    except EngineError as e:
        return {"ref": ref, "error": str(e)}
    if info is None:
        return {"ref": ref, "error": "image not present"}
    labels = {k: v for k, v in sorted(info.labels.items()) if k.startswith(("milabox.", "org.opencontainers."))}
    key = labels.get("milabox.runtime_image_id") or info.id
    cache = package_cache if package_cache is not None else {}
    if key not in cache:
        try:
            raw = engine.read_image_files(ref, [PACKAGES_PATH])[PACKAGES_PATH]
        except EngineError:
            raw = None
        cache[key] = [ln.strip() for ln in raw.decode(errors="replace").splitlines() if ln.strip()] if raw else None
    packages = cache[key]
    # The frozen torch is the image's own (exact, e.g. 2.13.0+rocm7.2 where the base image ships it); the label is
    # only what the vendor file asked for.
    torch = next((p.split("==", 1)[1] for p in packages or [] if p.lower().startswith("torch==")), None) \
        or labels.get("milabox.torch")
    return {"ref": ref, "tags": list(info.tags), "id": info.id, "digests": list(info.digests), "labels": labels,
            "torch": {"version": torch, "build": torch.split("+", 1)[1] if torch and "+" in torch else None},
            "packages": packages}


def collect(engine: Engine, *, images: dict[str, str], telemetry: Telemetry | None,
            attempts: Sequence[tuple[str, ContainerRequest]], command: Sequence[str],
            settings: dict[str, Any]) -> dict[str, Any]:
    """The provenance record of one run.

    Args:
        engine: the engine.
        images: image group -> reference (tag or digest reference) the run starts.
        telemetry: the run's open telemetry (its backends describe the devices); None: no device facts.
        attempts: (attempt folder, container request) of each planned attempt.
        command: the exact command line.
        settings: the run's options (vendor, size, repeat, devices...).

    Returns:
        JSON-ready data (see docs/results-format.md, provenance.json).
    """
    cache: dict[str, list[str] | None] = {}
    return {
        **_common(telemetry, command, settings), "runtime": "docker", "engine": _engine_facts(engine),
        "images": {group: image_facts(engine, tag, cache) for group, tag in images.items()},
        "attempts": [{"folder": folder, "container_request": request.to_dict(),
                      "reproduce": request.docker_run_command()} for folder, request in attempts],
    }


def _common(telemetry: Telemetry | None, command: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    devices = telemetry.describe() if telemetry is not None else {}
    return {
        "format": PROVENANCE_FORMAT, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "milabox": {"version": __version__, "source_commit": source_commit(), "python": sys.version.split()[0]},
        "command": list(command), "working_dir": os.getcwd(), "settings": settings,
        "host": host_details(),
        "devices": {"telemetry_backend": telemetry.name if telemetry else None, "backends": devices},
    }


#: Run by this environment's Python: its torch as the benchmark processes import it (not in milabox's own process).
_TORCH_PROBE = ("import json, torch; v = torch.__version__; print(json.dumps({'version': v, 'build': v.split('+', 1)[1] "
                "if '+' in v else None, 'cuda': torch.version.cuda, 'hip': getattr(torch.version, 'hip', None), "
                "'cuda_available': torch.cuda.is_available()}))")


def native_facts(python: str = sys.executable) -> dict[str, Any]:
    """The Python environment a native run uses in place of an image: interpreter, torch build, packages.

    Args:
        python: the interpreter the attempts run (default: this one).

    Returns:
        JSON-ready facts: ``python_executable``, ``python``, ``torch`` (version, build, CUDA/HIP versions, or an
        ``error``) and ``packages`` (its ``pip freeze``; None when unreadable).
    """
    def output(*args: str) -> str | None:
        try:
            done = subprocess.run([python, *args], capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    probe = output("-c", _TORCH_PROBE)
    frozen = output("-m", "pip", "freeze", "--all")
    return {"python_executable": python, "python": platform.python_version() if python == sys.executable else None,
            "torch": json.loads(probe) if probe else {"error": "torch does not import in this environment"},
            "packages": [ln.strip() for ln in frozen.splitlines() if ln.strip()] if frozen is not None else None}


def collect_native(*, telemetry: Telemetry | None, attempts: Sequence[tuple[str, ProcessRequest]],
                   command: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """The provenance record of a ``--runtime native`` run: the environment's facts instead of engine and images.

    Args:
        telemetry: the run's open telemetry; None: no device facts.
        attempts: (attempt folder, process request) of each planned attempt.
        command: the exact command line.
        settings: the run's options.

    Returns:
        JSON-ready data: the same keys as :func:`collect`, ``runtime`` "native", ``engine`` None, ``images`` {},
        ``native`` (:func:`native_facts`), and each attempt's ``process_request``.
    """
    return {
        **_common(telemetry, command, settings), "runtime": "native", "engine": None, "images": {},
        "native": native_facts(),
        "attempts": [{"folder": folder, "process_request": request.to_dict(), "reproduce": request.shell_command()}
                     for folder, request in attempts],
    }
