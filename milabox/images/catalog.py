"""What a benchmark image holds, as JSON: its rows, each size's config, and how to run it with a plain ``docker run``.

Written into the build context of each benchmark image and copied into it (``$MILABOX_CATALOG``); the image's
entrypoint (:mod:`milabox_runtime.cli`) only reads it. The configs are ``Benchmark.config(size)``, exactly what
the host passes as ``MILABOX_CONFIG``; the ``docker run`` flags are the vendor's passthrough, as milabox's own
container request (milabox/execution/requests.py ``container_request``) passes them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from milabox import __version__
from milabox.definitions.benchmarks import SIZES, Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import BindMount, ContainerRequest
from milabox.images.naming import benchmark_tag, exclusion
from milabox_runtime.cli import CATALOG_FORMAT, RESULTS_MOUNT

#: What the reader's shell puts in: the host user (milabox passes its own uid:gid) and a results folder.
USER = "$(id -u):$(id -g)"
RESULTS_SOURCE = "$PWD/results"


def docker_run_flags(vendor: Vendor) -> list[str]:
    """``docker run`` and the flags milabox passes for a vendor: no network, the host user, the one writable mount,
    the vendor's devices, GPUs, groups, security options, IPC and shared memory.

    Args:
        vendor: the vendor.

    Returns:
        The command line up to (not including) the image; ``$``-words are for the reader's shell.
    """
    pt = vendor.passthrough
    request = ContainerRequest(image="IMAGE", mounts=(BindMount(RESULTS_SOURCE, RESULTS_MOUNT, read_only=False),),
                               user=USER, network_mode="none", devices=pt.devices, gpu_request=pt.gpu_request,
                               group_add=pt.group_add, security_opt=pt.security_opt, ipc_mode=pt.ipc_mode,
                               shm_size=pt.shm_size)
    return shlex.split(request.docker_run_command())[:-1]


def _notes(vendor: Vendor) -> list[str]:
    pt, notes = vendor.passthrough, []
    if vendor.device_selection == "device_requests":
        notes.append("milabox runs a per_device row once per GPU, chosen with --gpus '\"device=N\"' "
                     "(--gpus all: every GPU)")
    elif vendor.device_selection == "env":
        notes.append(f"milabox runs a per_device row once per device, chosen with --env {vendor.device_env}=N "
                     "(unset: every device)")
    if pt.group_add_device_owners and pt.devices:
        notes.append(f"milabox also adds --group-add GID for each host group owning a device node under "
                     f"{' '.join(pt.devices)} (its GID differs between host and image), e.g. "
                     '--group-add "$(stat -c %g /dev/dri/renderD128)"')
    notes += [f"where the host has {src}, milabox also mounts it: --mount type=bind,source={src},target={dst},readonly"
              for src, dst in pt.volumes]
    notes.append("without --user the container runs as root and the results belong to root")
    return notes


def catalog(benchmarks: Sequence[Benchmark], vendor: Vendor) -> dict[str, Any]:
    """The catalog of one benchmark group's image for one vendor.

    Args:
        benchmarks: the group's benchmarks (at least one); those excluded from the vendor are listed with why.
        vendor: the vendor.

    Returns:
        JSON-ready data: format, image, group, vendor, rows (name, description, unit, precision, plan and each
        size's config), excluded rows, the ``docker run`` flags and notes.
    """
    first = benchmarks[0]
    return {
        "format": CATALOG_FORMAT, "milabox_version": __version__, "image": benchmark_tag(first.group, vendor),
        "group": first.group, "description": first.group_description, "vendor": vendor.name, "entry": first.entry,
        "sizes": list(SIZES),
        "benchmarks": [{"name": b.name, "description": b.description, "unit": b.unit, "precision": b.precision,
                        "plan": b.plan, "sizes": {size: b.config(size) for size in SIZES}}
                       for b in benchmarks if not exclusion(b, vendor)],
        "excluded": {b.name: exclusion(b, vendor) for b in benchmarks if exclusion(b, vendor)},
        "docker_run": docker_run_flags(vendor),
        "flags_source": f"milabox/vendors/{vendor.path.name or vendor.name + '.toml'} [passthrough], as "
                        "milabox/execution/requests.py passes them",
        "notes": _notes(vendor),
    }


def catalog_json(benchmarks: Sequence[Benchmark], vendor: Vendor) -> str:
    """:func:`catalog` as the file copied into the image (sorted keys: the same input, the same bytes and layer).

    Args:
        benchmarks: the group's benchmarks.
        vendor: the vendor.

    Returns:
        The JSON text.
    """
    return json.dumps(catalog(benchmarks, vendor), indent=2, sort_keys=True) + "\n"
