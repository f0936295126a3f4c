"""What milabox asks of a container engine and what it gets back, as plain data (no engine needed to build them).

:class:`ContainerRequest` describes one container completely, so it can be recorded beside the results and
printed as a ``docker run`` line; :class:`ImageInfo` and :class:`Exit` are the engine's answers.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BindMount:
    """A host folder mounted into a container.

    Attributes:
        source: the host path.
        target: the path inside the container.
        read_only: mounted read-only (every mount but a run's results folder).
    """

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerRequest:
    """Everything milabox asks of the engine for one container: printable, comparable, recordable.

    Attributes:
        image: image reference (tag or id).
        command: command list, or empty for the image's CMD.
        environment: variables set in the container.
        mounts: bind mounts; a run gives exactly one writable one, the results folder.
        user: ``uid:gid`` the workload runs as (so results belong to the host user).
        network_mode: ``none`` for benchmark runs, ``host`` for multi-node rendezvous.
        devices: device nodes, ``/dev/kfd`` style (mapped to the same path, ``rwm``).
        gpu_request: ask for GPUs through a device request (NVIDIA).
        gpu_ids: GPU ids for the device request; empty means all GPUs.
        group_add: extra groups (names or GIDs).
        security_opt: e.g. ``seccomp=unconfined``.
        ipc_mode: e.g. ``host``.
        shm_size: e.g. ``8g``.
        labels: container labels (``milabox.benchmark`` always among them).
        working_dir: working directory, or empty for the image's.
        memory: memory limit, e.g. ``8g`` (empty: none); exceeding it gets the container OOM-killed.
        cpuset_cpus: host CPUs the container may run on, e.g. ``0-3`` or ``0,2`` (empty: all; docker-py's
            ``cpuset_cpus``, ``docker run --cpuset-cpus``).
        cap_add: Linux capabilities added, e.g. ``IPC_LOCK`` (RDMA memory registration; empty: none).
        ulimits: resource limits as (name, soft, hard), e.g. ``("memlock", -1, -1)``: unlimited (empty: the
            engine's defaults).
    """

    image: str
    command: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    mounts: tuple[BindMount, ...] = ()
    user: str = ""
    network_mode: str = "none"
    devices: tuple[str, ...] = ()
    gpu_request: bool = False
    gpu_ids: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    ipc_mode: str = ""
    shm_size: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    memory: str = ""
    cpuset_cpus: str = ""
    cap_add: tuple[str, ...] = ()
    ulimits: tuple[tuple[str, int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready data (recorded beside results, shown by dry runs).

        Returns:
            A dict of every field (tuples as lists once serialised).
        """
        return asdict(self)

    def docker_kwargs(self) -> dict[str, Any]:
        """The request in docker-py's ``containers.create`` keywords.

        Returns:
            Keyword arguments for ``DockerClient.containers.create`` (after the image).

        Raises:
            ImportError: docker-py is not installed (it is imported only here, so the data needs no engine).
        """
        from docker.types import DeviceRequest, Mount, Ulimit

        kwargs: dict[str, Any] = {
            "environment": dict(self.environment),
            "mounts": [Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in self.mounts],
            "network_mode": self.network_mode,
            "labels": dict(self.labels),
            "detach": True,
        }
        if self.command:
            kwargs["command"] = list(self.command)
        if self.user:
            kwargs["user"] = self.user
        if self.devices:
            kwargs["devices"] = [f"{d}:{d}:rwm" for d in self.devices]
        if self.gpu_request:
            kwargs["device_requests"] = [
                DeviceRequest(device_ids=list(self.gpu_ids), capabilities=[["gpu"]]) if self.gpu_ids
                else DeviceRequest(count=-1, capabilities=[["gpu"]])
            ]
        for key in ("group_add", "security_opt", "cap_add"):
            if getattr(self, key):
                kwargs[key] = list(getattr(self, key))
        if self.ulimits:
            kwargs["ulimits"] = [Ulimit(name=name, soft=soft, hard=hard) for name, soft, hard in self.ulimits]
        for key in ("ipc_mode", "shm_size", "working_dir", "cpuset_cpus"):
            if getattr(self, key):
                kwargs[key] = getattr(self, key)
        if self.memory:
            kwargs["mem_limit"] = self.memory
            kwargs["memswap_limit"] = self.memory  # no swap beyond the limit: an overrun is an OOM kill
        return kwargs

    def docker_run_command(self) -> str:
        """The request as a ``docker run`` command line that a person can paste to reproduce the container.

        Returns:
            One shell-quoted line (``--rm``; everything else as requested: network, user, environment,
            mounts, devices, GPUs, groups, security options, capabilities, limits, IPC, shared memory, working
            folder, CPU set, memory, labels).
        """
        args = ["docker", "run", "--rm", "--network", self.network_mode]
        if self.user:
            args += ["--user", self.user]
        for key, value in self.environment.items():
            args += ["--env", f"{key}={value}"]
        for m in self.mounts:
            args += ["--mount", f"type=bind,source={m.source},target={m.target}" + (",readonly" if m.read_only else "")]
        for device in self.devices:
            args += ["--device", f"{device}:{device}:rwm"]
        if self.gpu_request:  # the CLI needs the inner quotes when the list has commas
            args += ["--gpus", f'"device={",".join(self.gpu_ids)}"' if self.gpu_ids else "all"]
        for flag, values in (("--group-add", self.group_add), ("--security-opt", self.security_opt),
                             ("--cap-add", self.cap_add)):
            for value in values:
                args += [flag, value]
        for name, soft, hard in self.ulimits:
            args += ["--ulimit", f"{name}={soft}:{hard}"]
        for flag, value in (("--ipc", self.ipc_mode), ("--shm-size", self.shm_size), ("--workdir", self.working_dir),
                            ("--cpuset-cpus", self.cpuset_cpus)):
            if value:
                args += [flag, value]
        if self.memory:
            args += ["--memory", self.memory, "--memory-swap", self.memory]
        for key, value in self.labels.items():
            args += ["--label", f"{key}={value}"]
        return shlex.join([*args, self.image, *self.command])


@dataclass(frozen=True)
class ImageInfo:
    """What milabox needs to know of a local image.

    Attributes:
        id: the image id, ``sha256:...``.
        tags: its local names.
        digests: its registry digests (``repo@sha256:...``), once pushed or pulled.
        labels: its labels (``milabox.*`` among them).
        size: its size in bytes.
    """

    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    labels: dict[str, str]
    size: int

    @property
    def digest_ref(self) -> str | None:
        """``repo@sha256:...`` naming exactly this image in a registry it was pushed to or pulled from, or None.

        The first of the engine's RepoDigests: each names this very image (its id), so any will do.

        Returns:
            The digest reference, or None for an image never pushed or pulled.
        """
        return self.digests[0] if self.digests else None


@dataclass(frozen=True)
class Exit:
    """How a container ended.

    Attributes:
        code: exit code, or None when it was killed at the timeout or by an interrupt.
        timed_out: killed because it outlived its timeout.
        oom_killed: the kernel's OOM killer ended it.
        interrupted: stopped because the user pressed Ctrl-C.
    """

    code: int | None
    timed_out: bool = False
    oom_killed: bool = False
    interrupted: bool = False
