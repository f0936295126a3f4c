"""The only module that talks to the container engine (Docker, through docker-py).

Everything else describes what it wants as plain data (:class:`ContainerRequest`) and calls
:class:`Engine`: ``build``, ``container`` (create/start/wait/remove), ``image``, ``containers``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Mount

from .errors import BuildError, EngineError

LABEL_PREFIX = "milabox."
CONTAINER_LABEL = "milabox.benchmark"  # every container milabox creates carries it
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


@dataclass(frozen=True)
class BindMount:
    """A host folder mounted into a container."""

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

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready data (recorded beside results, shown by dry runs)."""
        return asdict(self)

    def docker_kwargs(self) -> dict[str, Any]:
        """The request in docker-py's ``containers.create`` keywords."""
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
        for key in ("group_add", "security_opt"):
            if getattr(self, key):
                kwargs[key] = list(getattr(self, key))
        for key in ("ipc_mode", "shm_size", "working_dir"):
            if getattr(self, key):
                kwargs[key] = getattr(self, key)
        return kwargs


@dataclass(frozen=True)
class ImageInfo:
    """What milabox needs to know of a local image."""

    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    labels: dict[str, str]
    size: int


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


class Container:
    """A created container; use as a context manager so it is removed whatever happens."""

    def __init__(self, engine: Engine, handle: Any):
        self._engine, self._handle = engine, handle
        self.id: str = handle.id
        self._log_thread: threading.Thread | None = None

    def start(self, log: IO[bytes] | None = None) -> None:
        """Start the container; with ``log``, copy its output there as it comes (a thread blocked on the stream).

        Raises:
            EngineError: the engine refused to start it (e.g. a device or driver is missing).
        """
        try:
            self._handle.start()
        except docker.errors.APIError as e:
            raise EngineError(f"the engine could not start the container: {_explain(e)}") from None
        if log is not None:
            stream = self._handle.logs(stream=True, follow=True)
            self._log_thread = threading.Thread(target=_copy, args=(stream, log), daemon=True)
            self._log_thread.start()

    def wait(self, timeout: float | None) -> Exit:
        """Block (no polling) until the container exits or ``timeout`` seconds pass; kill it at the timeout.

        KeyboardInterrupt is turned into a clean stop: the container gets SIGTERM, then SIGKILL after 10 s.

        Returns:
            How it ended.
        """
        try:
            result = self._handle.wait(timeout=timeout)
            code, timed_out, interrupted = int(result.get("StatusCode", -1)), False, False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            self._quietly(lambda: self._handle.kill())
            code, timed_out, interrupted = None, True, False
        except KeyboardInterrupt:
            self._quietly(lambda: self._handle.stop(timeout=10))
            code, timed_out, interrupted = None, False, True
        self._finish_log()
        state = self.inspect().get("State", {})
        return Exit(code=code, timed_out=timed_out, oom_killed=bool(state.get("OOMKilled")), interrupted=interrupted)

    def inspect(self) -> dict[str, Any]:
        """The engine's full description of the container (``docker inspect``)."""
        self._handle.reload()
        return self._handle.attrs

    def remove(self) -> None:
        """Remove the container (killing it if it still runs); never raises for one already gone."""
        self._quietly(lambda: self._handle.remove(force=True))
        self._finish_log()

    def _finish_log(self) -> None:
        if self._log_thread is not None:
            self._log_thread.join(timeout=10)
            self._log_thread = None

    @staticmethod
    def _quietly(action: Callable[[], Any]) -> None:
        try:
            action()
        except (docker.errors.NotFound, docker.errors.APIError, requests.exceptions.RequestException):
            pass

    def __enter__(self) -> Container:  # noqa: PYI034 (not subclassed)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _copy(stream: Iterator[bytes], out: IO[bytes]) -> None:
    try:
        for chunk in stream:
            out.write(chunk)
            out.flush()
    except (requests.exceptions.RequestException, OSError, ValueError):
        pass  # the container went away; what was copied stays


def _explain(e: docker.errors.APIError) -> str:
    return str(getattr(e, "explanation", None) or e).strip().splitlines()[0]


class Engine:
    """A connection to a Docker engine.

    Args:
        base_url: engine address; default ``$DOCKER_HOST`` or ``unix:///var/run/docker.sock``.

    Raises:
        EngineError: nothing answers there (the message says what was tried and how to start one).
    """

    def __init__(self, base_url: str | None = None):
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            self.client = docker.DockerClient(base_url=self.base_url, timeout=300)
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise EngineError(
                f"no Docker engine answers at {self.base_url} ({reason}); start one with `make engine` "
                "(installs and starts dockerd as root) or `sudo systemctl start docker`, or set DOCKER_HOST"
            ) from None

    def version(self) -> dict[str, Any]:
        """The engine's version report (``Version``, ``ApiVersion``, ``Os``, ``Arch``...)."""
        return self.client.version()

    def image(self, ref: str) -> ImageInfo | None:
        """Describe a local image, or return None when it is not present."""
        try:
            img = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot inspect image {ref}: {_explain(e)}") from None
        return ImageInfo(id=img.id, tags=tuple(img.tags), digests=tuple(img.attrs.get("RepoDigests") or ()),
                         labels=dict(img.labels or {}), size=int(img.attrs.get("Size") or 0))

    def pull(self, ref: str) -> bool:
        """Try to pull an image; return whether it worked (an offline machine simply returns False)."""
        try:
            self.client.images.pull(ref)
            return True
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return False

    def tag(self, ref: str, repository: str, tag: str) -> None:
        """Give a local image another name."""
        self.client.images.get(ref).tag(repository, tag)

    def import_rootfs(self, stream: IO[bytes], repository: str, tag: str) -> str:
        """Import a root filesystem tar stream as an image (``docker import``); return the image id.

        Raises:
            EngineError: the engine refused the archive.
        """
        try:
            out = self.client.api.import_image_from_stream(stream, repository=repository, tag=tag)
        except docker.errors.APIError as e:
            raise EngineError(f"the engine refused the root filesystem: {_explain(e)}") from None
        img = self.image(f"{repository}:{tag}")
        if img is None:
            raise EngineError(f"import of {repository}:{tag} left no image (engine said: {str(out)[:200]})")
        return img.id

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str,
              on_line: Callable[[str], None], on_step: Callable[[int, int, str], None],
              no_cache: bool = False) -> str:
        """Build ``context/Dockerfile`` into ``tag``, streaming the log.

        Args:
            context: the build context folder.
            tag: the image tag.
            labels: labels set on the image (outside the Dockerfile, so they do not break layer caching).
            network_mode: networking of RUN steps (``host`` where the build downloads through the host).
            on_line: called with every log line.
            on_step: called with (step, steps, instruction) as each Dockerfile step starts.
            no_cache: build every layer again.

        Returns:
            The image id.

        Raises:
            BuildError: a step failed (message: the step number and instruction, and the engine's error).
        """
        step, steps, instruction, image_id = 0, 0, "", ""
        try:
            for chunk in self.client.api.build(path=str(context), tag=tag, labels=labels, rm=True, forcerm=True,
                                               network_mode=network_mode, decode=True, nocache=no_cache):
                if "error" in chunk:  # docker-py does not raise for a failed step
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    on_line(f"ERROR: {detail}")
                    where = f"step {step}/{steps} `{instruction[:120]}`" if step else "before the first step"
                    raise BuildError(f"{where} failed: {detail.strip().splitlines()[-1][:300]}")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                for line in chunk.get("stream", "").splitlines():
                    on_line(line)
                    m = _STEP.match(line)
                    if m:
                        step, steps, instruction = int(m[1]), int(m[2]), m[3]
                        on_step(step, steps, instruction)
        except docker.errors.APIError as e:
            raise BuildError(f"the engine refused the build: {_explain(e)}") from None
        if not image_id:
            info = self.image(tag)
            if info is None:
                raise BuildError("the build ended without producing an image")
            image_id = info.id
        return image_id

    def container(self, request: ContainerRequest) -> Container:
        """Create (not start) a container from a request.

        Raises:
            EngineError: the engine refused the request (message says why).
        """
        try:
            handle = self.client.containers.create(request.image, **request.docker_kwargs())
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {request.image} is not present; build it with `milabox build`") from None
        except docker.errors.APIError as e:
            raise EngineError(f"the engine refused to create a container: {_explain(e)}") from None
        return Container(self, handle)

    def containers(self, label: str = CONTAINER_LABEL) -> list[str]:
        """Ids of all containers (running or not) carrying a label."""
        return [c.id for c in self.client.containers.list(all=True, filters={"label": label})]

    def remove_image(self, ref: str) -> None:
        """Remove a local image if present."""
        try:
            self.client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass
