"""Vendors: one data file each in milabox/vendors/. What differs between CPU, CUDA, ROCm and XPU is data."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from milabox.definitions.toml import Fields, read_toml
from milabox.errors import ConfigError, UnknownVendor
from milabox.resources import package_path

#: How a container gets its devices: ``none`` (all of them, nothing to select), ``device_requests`` (NVIDIA ids
#: through a device request), ``env`` (a variable, ``device_env``) or ``cpuset`` (disjoint host core sets, pinned
#: with the engine's cpuset: one "device" per NUMA node, else the cores split evenly over the selected devices).
DEVICE_SELECTIONS = ("none", "device_requests", "env", "cpuset")
COLLECTIVE_BACKENDS = ("nccl", "xccl", "gloo")
DEVICE_DISCOVERIES = ("nvidia", "kfd", "dri", "none")
#: Where the runtime image's torch comes from: ``index`` (the lock installs it from ``torch_index``, or the package
#: index when that is empty) or ``image`` (the vendor's base image ships it; the lock leaves torch out and the build
#: checks the image's torch is ``torch_version``).
TORCH_SOURCES = ("index", "image")


@dataclass(frozen=True)
class LocalBase:
    """How to make a vendor's base image locally with debootstrap when no registry can be reached.

    Attributes:
        tag: image tag given to the imported root filesystem.
        suite: Debian suite (default ``bookworm``).
        variant: debootstrap variant (default ``minbase``).
        mirror: Debian mirror URL, used only where this host's apt sources name no mirror for ``suite``
            (default empty: none; the host's apt configuration decides, see ``milabox.images.base``).
    """

    tag: str
    suite: str = "bookworm"
    variant: str = "minbase"
    mirror: str = ""


@dataclass(frozen=True)
class JaxSupport:
    """How a vendor gets JAX, from its ``[jax]`` table: exactly one of the two fields is set.

    Attributes:
        requirement: the exact JAX pin its JAX lock starts from, e.g. ``jax==0.9.2`` (CPU) or
            ``jax[cuda13]==0.9.2`` (the extra pulls the vendor's plugin wheels from the same index).
        excluded: why the vendor runs no JAX row (each JAX row is skipped with it).
    """

    requirement: str = ""
    excluded: str = ""

    @property
    def version(self) -> str:
        """The pinned JAX version (after ``==``), or empty."""
        return self.requirement.partition("==")[2].strip()


_JAX_PIN = re.compile(r"^jax(\[[A-Za-z0-9_,-]+\])?==[0-9][^\s;]*$")


@dataclass(frozen=True)
class Passthrough:
    """The container request that hands a vendor's devices to a container.

    Attributes:
        gpu_request: ask for GPUs through a device request (NVIDIA Container Toolkit; default false).
        devices: device nodes passed through, e.g. ``/dev/kfd`` (default none).
        group_add: groups the container user joins, e.g. ``video`` (default none).
        group_add_device_owners: also join the host groups owning each passed device node (default false).
        security_opt: e.g. ``seccomp=unconfined`` (default none).
        ipc_mode: e.g. ``host`` (default: the engine's).
        shm_size: e.g. ``8g`` (default: the engine's).
        volumes: host path -> container path, mounted read-only where the host has the path (default none).
    """

    gpu_request: bool = False
    devices: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    group_add_device_owners: bool = False
    security_opt: tuple[str, ...] = ()
    ipc_mode: str = ""
    shm_size: str = ""
    volumes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Vendor:
    """One vendor (a platform such as ``rocm``, known also by its maker such as ``amd``).

    Attributes:
        name: platform name: the file's stem and the name in image tags.
        maker: hardware maker, accepted as an alias of ``name``.
        description: one line for listings.
        base_image: image the runtime image starts FROM (``name:tag`` or ``name:tag@sha256:...``).
        system_packages: apt packages installed into the runtime image (Python and drivers' user space).
        torch_version: exact torch version, e.g. ``2.13.0`` or ``2.13.0+cpu``; with ``torch_source = "image"``, the
            version the base image's torch must start with (e.g. ``2.13.0``, matching ``2.13.0+rocm7.1``).
        torch_index: the vendor's torch wheel index URL (default empty: torch comes from the package index, PyPI
            unless pip is configured otherwise); unused with ``torch_source = "image"``.
        torch_source: ``index`` (default: the lock pins and installs torch) or ``image`` (the base image ships
            torch; see ``TORCH_SOURCES``).
        device_selection: ``none``, ``device_requests`` (NVIDIA ids), ``env`` (``device_env``) or ``cpuset``
            (core sets; see ``DEVICE_SELECTIONS``).
        device_env: environment variable that selects devices inside the container.
        telemetry: name of the host telemetry backend (nvml, amdsmi, xpu-smi, psutil).
        python_version: the image's Python (``3.11`` on Debian bookworm, ``3.12`` on Ubuntu 24.04): locks
            are resolved for it.
        python_platform: the image's platform as uv names it (default ``x86_64-manylinux_2_28``).
        collective_backend: torch.distributed backend of multi-device and multi-node runs: ``nccl`` (NVIDIA;
            AMD's RCCL answers to the same name), ``xccl`` (Intel) or ``gloo`` (CPU; the default).
        device_discovery: how a host's devices are counted without a driver call: ``nvidia`` (``/dev/nvidiaN``),
            ``kfd`` (the KFD topology of AMD GPUs), ``dri`` (``/dev/dri/renderD*``) or ``none`` (the default).
        apptainer_flags: flags ``apptainer exec`` needs for the devices, e.g. ``--nv`` (default none).
        requires_cuda: the CUDA (major, minor) the image's driver must run, from ``requires_cuda = "13.0"``
            (what ``NVIDIA_REQUIRE_CUDA`` asks of the container toolkit; ``milabox doctor`` checks it), or None
            (default: no requirement).
        environment: variables every container of the vendor gets, name -> value, from the ``[environment]``
            table (default none), e.g. ``HIPBLASLT_ALLOW_TF32`` on ROCm.
        jax: how the vendor gets JAX (``[jax]``: ``requirement`` or ``excluded``; a file without the table runs no
            JAX row, saying so).
        passthrough: the device passthrough request.
        local_base: debootstrap recipe for a locally made base, or None.
        path: the data file.
    """

    name: str
    maker: str
    description: str
    base_image: str
    system_packages: tuple[str, ...]
    torch_version: str
    torch_index: str
    device_selection: str
    device_env: str
    telemetry: str
    python_version: str = "3.11"
    torch_source: str = TORCH_SOURCES[0]
    python_platform: str = "x86_64-manylinux_2_28"
    collective_backend: str = "gloo"
    device_discovery: str = "none"
    apptainer_flags: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    requires_cuda: tuple[int, int] | None = None
    jax: JaxSupport = field(default_factory=lambda: JaxSupport(excluded="its vendor file has no [jax] table"))
    passthrough: Passthrough = field(default_factory=Passthrough)
    local_base: LocalBase | None = None
    path: Path = Path()

    def framework_excluded(self, framework: str) -> str:
        """Why the vendor runs no row of the framework (``torch`` or ``jax``), or empty where it does."""
        return self.jax.excluded if framework == "jax" else ""

    def framework_version(self, framework: str) -> str:
        """The exact version of the framework the vendor's runtime image for it carries."""
        return self.jax.version if framework == "jax" else self.torch_version

    @property
    def torch_from_image(self) -> bool:
        """Whether the base image ships torch (``torch_source = "image"``): the lock leaves it out."""
        return self.torch_source == TORCH_SOURCES[1]


def vendors_dir() -> Path:
    """Folder of vendor data files: ``$MILABOX_VENDORS`` or the package's ``vendors/``."""
    return Path(os.environ.get("MILABOX_VENDORS") or package_path("vendors"))


def load_vendor_file(path: Path) -> Vendor:
    """Read and validate one vendor data file.

    Args:
        path: a ``vendors/<name>.toml`` file.

    Returns:
        The vendor.

    Raises:
        ConfigError: the file is unreadable or a field is missing or invalid (the message names it).
    """
    f = Fields(path, read_toml(path))
    name = f.get("name", str)
    if name != path.stem:
        raise f.fail("name", f"is {name!r} but the file is {path.name}; they must match")
    pt = f.sub("passthrough")
    volumes = pt.get("volumes", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) and v.startswith("/") for k, v in volumes.items()):
        raise pt.fail("volumes", "must map host paths to absolute container paths (strings)")
    passthrough = Passthrough(
        gpu_request=pt.get("gpu_request", bool, False),
        devices=tuple(pt.strings("devices")),
        group_add=tuple(pt.strings("group_add")),
        group_add_device_owners=pt.get("group_add_device_owners", bool, False),
        security_opt=tuple(pt.strings("security_opt")),
        ipc_mode=pt.get("ipc_mode", str, ""),
        shm_size=pt.get("shm_size", str, ""),
        volumes=tuple(sorted(volumes.items())),
    )
    pt.reject_unknown()
    environment = f.get("environment", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in environment.items()):
        raise f.fail("environment", "must map variable names to string values")
    cuda = f.get("requires_cuda", str, "")
    if cuda and not (len(cuda.split(".")) == 2 and all(p.isdigit() for p in cuda.split("."))):
        raise f.fail("requires_cuda", f"is {cuda!r}; expected MAJOR.MINOR, e.g. \"13.0\"")
    jax = JaxSupport(excluded="its vendor file has no [jax] table")
    if "jax" in f.table:
        jt = f.sub("jax")
        jax = JaxSupport(requirement=jt.get("requirement", str, "").strip(), excluded=jt.get("excluded", str, "").strip())
        if bool(jax.requirement) == bool(jax.excluded):
            raise jt.fail("requirement", "and jax.excluded: set exactly one (the JAX pin, or why there is no JAX)")
        if jax.requirement and not _JAX_PIN.match(jax.requirement):
            raise jt.fail("requirement", f"is {jax.requirement!r}; expected an exact pin such as jax==0.9.2 or "
                          "jax[cuda13]==0.9.2")
        jt.reject_unknown()
    local_base = None
    if "local_base" in f.table:
        lb = f.sub("local_base")
        local_base = LocalBase(tag=lb.get("tag", str), suite=lb.get("suite", str, "bookworm"),
                               variant=lb.get("variant", str, "minbase"),
                               mirror=lb.get("mirror", str, ""))
        lb.reject_unknown()
    vendor = Vendor(
        name=name,
        maker=f.get("maker", str),
        description=f.get("description", str),
        base_image=f.get("base_image", str),
        system_packages=tuple(f.strings("system_packages")),
        torch_version=f.get("torch_version", str),
        torch_index=f.get("torch_index", str, ""),
        torch_source=f.get("torch_source", str, TORCH_SOURCES[0], choices=TORCH_SOURCES),
        device_selection=f.get("device_selection", str, choices=DEVICE_SELECTIONS),
        device_env=f.get("device_env", str, ""),
        telemetry=f.get("telemetry", str),
        python_version=f.get("python_version", str),
        python_platform=f.get("python_platform", str, "x86_64-manylinux_2_28"),
        collective_backend=f.get("collective_backend", str, "gloo", choices=COLLECTIVE_BACKENDS),
        device_discovery=f.get("device_discovery", str, "none", choices=DEVICE_DISCOVERIES),
        apptainer_flags=tuple(f.strings("apptainer_flags")),
        environment=tuple(sorted(environment.items())),
        requires_cuda=tuple(int(p) for p in cuda.split(".")) if cuda else None,  # type: ignore[arg-type]
        jax=jax,
        passthrough=passthrough,
        local_base=local_base,
        path=path,
    )
    if vendor.device_selection == "env" and not vendor.device_env:
        raise f.fail("device_env", "is empty but device_selection is 'env'; name the variable that selects devices")
    f.reject_unknown()
    return vendor


def all_vendors(folder: Path | None = None) -> dict[str, Vendor]:
    """Load every vendor data file.

    Args:
        folder: where the files are (default: :func:`vendors_dir`).

    Returns:
        Vendors by platform name, sorted.

    Raises:
        ConfigError: a file is invalid, or two vendors claim the same maker.
    """
    folder = folder or vendors_dir()
    vendors = {p.stem: load_vendor_file(p) for p in sorted(Path(folder).glob("*.toml"))}
    if not vendors:
        raise ConfigError(f"{folder}: no vendor data files (*.toml) found")
    return vendors


def get_vendor(name: str, folder: Path | None = None) -> Vendor:
    """Find a vendor by platform (``cuda``, ``rocm``, ``xpu``, ``cpu``) or maker (``nvidia``, ``amd``, ``intel``).

    Args:
        name: platform or maker, case-insensitive.
        folder: where the vendor files are (default: :func:`vendors_dir`).

    Returns:
        The vendor.

    Raises:
        UnknownVendor: no vendor has that platform or maker name (the message lists the valid ones).
    """
    vendors = all_vendors(folder)
    key = name.strip().lower()
    for vendor in vendors.values():
        if key in (vendor.name, vendor.maker):
            return vendor
    valid = ", ".join(f"{v.name} ({v.maker})" if v.maker != v.name else v.name for v in vendors.values())
    raise UnknownVendor(f"unknown vendor {name!r}; valid: {valid}")
