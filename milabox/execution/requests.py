"""The exact container request of each attempt: the vendor's passthrough, one writable mount, no network."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from milabox.definitions.vendors import Vendor
from milabox.engine import CONTAINER_LABEL, BindMount, ContainerRequest
from milabox.execution.multinode import node_request
from milabox.execution.plan import Attempt, RunOptions, attempt_config
from milabox_runtime.cli import RESULTS_MOUNT  # the in-container runtime reads it there


def _device_owner_gids(paths: Sequence[str]) -> list[str]:
    gids: set[int] = set()
    for path in paths:
        p = Path(path)
        nodes = [p, *p.iterdir()] if p.is_dir() else [p]
        for node in nodes:
            try:
                if not node.is_dir():
                    gids.add(node.stat().st_gid)
            except OSError:
                continue
    return [str(g) for g in sorted(gids) if g != 0]


def container_request(attempt: Attempt, vendor: Vendor, image: str, results_dir: Path, size: str,
                      environment: dict[str, str] | None = None, run_name: str = "",
                      memory: str = "", config: dict | None = None) -> ContainerRequest:
    """The exact container request for one attempt: passthrough from the vendor's data, nothing else writable.

    Args:
        attempt: benchmark, repeat and devices.
        vendor: the vendor (its passthrough and device selection).
        image: image reference.
        results_dir: host folder mounted read-write at ``/results`` (the only writable host mount).
        size: ``smoke`` or ``full``.
        environment: extra variables.
        run_name: the run folder's name, recorded as a label.
        memory: memory limit (empty: none).
        config: the benchmark's config (default: its size's own, ``bench.config(size)``).

    Returns:
        The request; an attempt pinned to host CPUs (``attempt.cpus``) gets them as its cpuset and as many
        threads (``OMP_NUM_THREADS``, which torch follows), unless ``environment`` says otherwise.
    """
    bench, pt = attempt.benchmark, vendor.passthrough
    threads = {"OMP_NUM_THREADS": str(len(attempt.cpus.split(",")))} if attempt.cpus else {}
    env = {"MILABOX_CONFIG": json.dumps(bench.config(size) if config is None else config, sort_keys=True),
           "MILABOX_RESULTS": RESULTS_MOUNT, "MILABOX_BENCHMARK": bench.name, "HOME": "/tmp", **threads,
           **dict(vendor.environment), **(environment or {})}  # the vendor's [environment], then the run's
    if attempt.devices and vendor.device_selection == "env":
        env[vendor.device_env] = ",".join(attempt.devices)
    groups = list(pt.group_add)
    if pt.group_add_device_owners:
        groups += [g for g in _device_owner_gids(pt.devices) if g not in groups]
    mounts = (BindMount(str(results_dir.resolve()), RESULTS_MOUNT, read_only=False),
              # Only where the host has them: a bind of a missing path is refused by the engine.
              *(BindMount(src, dst, read_only=True) for src, dst in pt.volumes if os.path.exists(src)))
    return ContainerRequest(
        image=image, environment=env, mounts=mounts, user=f"{os.getuid()}:{os.getgid()}", network_mode="none",
        devices=pt.devices, gpu_request=pt.gpu_request,
        gpu_ids=attempt.devices if vendor.device_selection == "device_requests" else (),
        group_add=tuple(groups), security_opt=pt.security_opt, ipc_mode=pt.ipc_mode, shm_size=pt.shm_size,
        labels={CONTAINER_LABEL: bench.name, "milabox.run": run_name, "milabox.attempt": attempt.folder},
        memory=memory, cpuset_cpus=attempt.cpus,
    )


def attempt_request(attempt: Attempt, vendor: Vendor, image: str, run_dir: Path, options: RunOptions) -> ContainerRequest:
    """The container request of one attempt of a run (what :func:`run_attempt` creates, and provenance records).

    Args:
        attempt: the attempt.
        vendor: the vendor.
        image: image reference.
        run_dir: the run folder (the attempt's folder is mounted as ``/results``).
        options: the run's options.

    Returns:
        The request.
    """
    request = container_request(attempt, vendor, image, run_dir / attempt.folder, options.size, options.environment,
                                run_dir.name, options.memory, attempt_config(attempt.benchmark, options))
    if options.nodes is not None:  # one container per node, joined over the host network
        request = node_request(request, options.nodes, vendor, attempt.devices)
    return request


