"""The only module that talks to the container engine (Docker, through docker-py).

Everything else describes what it wants as plain data (:class:`ContainerRequest`) and calls
:class:`Engine`: ``build``, ``container`` (create/start/wait/remove), ``image``, ``containers``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Mount

from milabox.errors import BuildError, EngineError

LABEL_PREFIX = "milabox."
CONTAINER_LABEL = "milabox.benchmark"  # every container milabox creates carries it
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# A stopped benchmark gets SIGTERM, then SIGKILL this many seconds later: short, because a user who pressed
# Ctrl-C waits for it, and a benchmark has nothing to save (its events are written as they happen).
STOP_GRACE_S = 3
# Go's os.ModeType (the engine's stat "mode"): directory, symlink, device, named pipe, socket, char device, irregular.
_NOT_REGULAR = 1 << 31 | 1 << 27 | 1 << 26 | 1 << 25 | 1 << 24 | 1 << 21 | 1 << 19


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
        memory: memory limit, e.g. ``8g`` (empty: none); exceeding it gets the container OOM-killed.
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
        if self.memory:
            kwargs["mem_limit"] = self.memory
            kwargs["memswap_limit"] = self.memory  # no swap beyond the limit: an overrun is an OOM kill
        return kwargs

    def docker_run_command(self) -> str:
        """The request as a ``docker run`` command line that a person can paste to reproduce the container.

        Returns:
            One shell-quoted line (``--rm``; everything else as requested: network, user, environment,
            mounts, devices, GPUs, groups, security options, IPC, shared memory, memory, labels).
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
        for flag, values in (("--group-add", self.group_add), ("--security-opt", self.security_opt)):
            for value in values:
                args += [flag, value]
        for flag, value in (("--ipc", self.ipc_mode), ("--shm-size", self.shm_size), ("--workdir", self.working_dir)):
            if value:
                args += [flag, value]
        if self.memory:
            args += ["--memory", self.memory, "--memory-swap", self.memory]
        for key, value in self.labels.items():
            args += ["--label", f"{key}={value}"]
        return shlex.join([*args, self.image, *self.command])


@dataclass(frozen=True)
class ImageInfo:
    """What milabox needs to know of a local image."""

    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    labels: dict[str, str]
    size: int

    @property
    def digest_ref(self) -> str | None:
        """``repo@sha256:...`` naming exactly this image in a registry it was pushed to or pulled from, or None.

        The first of the engine's RepoDigests: each names this very image (its id), so any will do.
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

        A KeyboardInterrupt while waiting becomes :meth:`stop`.

        Returns:
            How it ended.
        """
        try:
            result = self._handle.wait(timeout=timeout)
            code, timed_out = int(result.get("StatusCode", -1)), False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            self._quietly(lambda: self._handle.kill())
            code, timed_out = None, True
        except KeyboardInterrupt:
            return self.stop()
        return self._ended(code, timed_out=timed_out)

    def stop(self, grace_s: float = STOP_GRACE_S) -> Exit:
        """Stop the container because the user asked to: SIGTERM, then SIGKILL after ``grace_s`` seconds.

        Returns:
            How it ended (``interrupted``), whatever its process does with SIGTERM.
        """
        self._quietly(lambda: self._handle.stop(timeout=grace_s))
        return self._ended(None, interrupted=True)

    def _ended(self, code: int | None, timed_out: bool = False, interrupted: bool = False) -> Exit:
        self._finish_log()
        try:
            state = self.inspect().get("State", {})
        except (docker.errors.NotFound, docker.errors.APIError, requests.exceptions.RequestException):
            state = {}
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

    def disk_usage(self) -> list[dict[str, Any]]:
        """Every local image with its tags, total size and the part shared with other images (``docker system df -v``).

        Returns:
            One dict an image: ``id``, ``tags``, ``size``, ``shared_size`` (bytes; ``shared_size`` is -1 where the
            engine did not compute it).
        """
        return [{"id": img["Id"], "tags": img.get("RepoTags") or [], "size": int(img.get("Size") or 0),
                 "shared_size": int(img.get("SharedSize") if img.get("SharedSize") is not None else -1)}
                for img in self.client.df().get("Images") or []]

    def containers(self, label: str = CONTAINER_LABEL) -> list[str]:
        """Ids of all containers (running or not) carrying a label."""
        return [c.id for c in self.client.containers.list(all=True, filters={"label": label})]

    def remove_image(self, ref: str) -> None:
        """Remove a local image if present."""
        try:
            self.client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass

    def read_image_files(self, ref: str, paths: list[str], max_bytes: int = 16 * 2**20) -> dict[str, bytes | None]:
        """Read files out of an image without running it: create a container (never started), copy, remove it.

        Args:
            ref: image tag or id.
            paths: absolute paths inside the image.
            max_bytes: a larger file reads as None rather than being copied.

        Returns:
            path -> content; None for a path the image lacks (or that is not a regular file, or is too large).

        Raises:
            EngineError: the image is missing or the engine refused to create the container.
        """
        try:
            handle = self.client.containers.create(ref, command=["true"], network_mode="none",
                                                   labels={CONTAINER_LABEL: "read-image-files"})
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {ref} is not present; build it with `milabox build`") from None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot read files from image {ref}: {_explain(e)}") from None
        try:
            return {path: self._copy_out(handle, path, max_bytes) for path in paths}
        finally:
            Container._quietly(lambda: handle.remove(force=True))

    def _copy_out(self, handle: Any, path: str, max_bytes: int) -> bytes | None:
        api = self.client.api
        # Stat first (HEAD): an archive stream left half-read would block the engine from removing the container.
        try:
            head = api.head(f"{api.base_url}/v{api.api_version}/containers/{handle.id}/archive", params={"path": path})
        except requests.exceptions.RequestException:
            return None
        encoded = head.headers.get("X-Docker-Container-Path-Stat") if head.status_code == 200 else None
        stat = json.loads(base64.b64decode(encoded)) if encoded else {}
        if not stat or int(stat.get("mode", 0)) & _NOT_REGULAR or int(stat.get("size", 0)) > max_bytes:
            return None
        try:
            stream, _ = handle.get_archive(path)
            archive = b"".join(stream)  # read to the end: a tar of the one file, about its size
        except (docker.errors.NotFound, docker.errors.APIError, requests.exceptions.RequestException):
            return None
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            extracted = tar.extractfile(member) if member else None
            return extracted.read() if extracted else None

    # ---- moving images between engines and registries (bundles, push, pull) ----

    def save_images(self, refs: Sequence[str], chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream ``docker save`` of several images as one tar: the layers they share are in it once.

        Args:
            refs: image tags (kept in the archive, so a load restores them).
            chunk_size: bytes per chunk.

        Yields:
            The archive, chunk by chunk (nothing is held in memory).

        Raises:
            EngineError: an image is missing, or the engine failed during the export.
        """
        api = self.client.api
        try:
            # docker-py wraps only the one-image export; the engine's /images/get takes several names.
            # No read timeout: the engine may prepare tens of GB before its first byte.
            res = api._get(api._url("/images/get"), params={"names": list(refs)}, stream=True, timeout=None)
            yield from api._stream_raw_result(res, chunk_size, False)  # raises for status
        except docker.errors.APIError as e:
            raise EngineError(f"the engine could not save {', '.join(refs)}: {_explain(e)}") from None
        except requests.exceptions.RequestException as e:
            raise EngineError(f"the engine stopped while saving {', '.join(refs)}: {e}") from None

    def load_images(self, chunks: Iterable[bytes]) -> list[str]:
        """``docker load`` a saved archive from a stream (sent as it is read, never held in memory).

        Args:
            chunks: the archive ``save_images`` made.

        Returns:
            What the engine says it loaded: tags, or ``sha256:...`` ids of untagged images.

        Raises:
            EngineError: the engine refused the archive (the message is its own).
        """
        api = self.client.api
        loaded: list[str] = []
        try:
            # No read timeout: the engine answers only once it has unpacked everything (quiet), which takes
            # minutes for images of tens of GB.
            res = api._post(api._url("/images/load"), data=chunks, params={"quiet": True}, stream=True, timeout=None)
            api._raise_for_status(res)
            for chunk in api._stream_helper(res, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    raise EngineError(f"the engine refused the images: {str(detail).strip()[:300]}")
                m = re.match(r"^Loaded image(?: ID)?: (.+)$", str(chunk.get("stream", "")).strip())
                if m:
                    loaded.append(m[1])
        except docker.errors.APIError as e:
            raise EngineError(f"the engine refused the images: {_explain(e)}") from None
        except requests.exceptions.RequestException as e:
            raise EngineError(f"the engine stopped while loading images: {e}") from None
        return loaded

    def push_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """Push ``repository:tag`` to its registry (no credentials: a local or open registry).

        Args:
            repository: e.g. ``127.0.0.1:5000/team/matmul``.
            tag: e.g. ``cpu-0.1.0``.
            on_progress: called with (bytes done, bytes known so far) summed over layers.

        Returns:
            The manifest digest the registry stored, ``sha256:...``.

        Raises:
            EngineError: the registry or engine refused the push (the message is theirs).
        """
        return self._registry_stream("push", repository, tag, on_progress)

    def pull_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """Pull ``repository:tag`` (no credentials); unlike :meth:`pull`, a failure says why.

        Returns:
            The manifest digest, ``sha256:...``.

        Raises:
            EngineError: the registry or engine refused the pull (the message is theirs).
        """
        return self._registry_stream("pull", repository, tag, on_progress)

    def _registry_stream(self, action: str, repository: str, tag: str,
                         on_progress: Callable[[int, int], None]) -> str:
        layers: dict[str, tuple[int, int]] = {}
        digest = ""
        try:
            call = self.client.api.push if action == "push" else self.client.api.pull
            for chunk in call(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    raise EngineError(f"{action} of {repository}:{tag} failed: {str(detail).strip()[:300]}")
                detail = chunk.get("progressDetail") or {}
                if chunk.get("id") and detail.get("total"):
                    layers[chunk["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                    on_progress(sum(c for c, _ in layers.values()), sum(t for _, t in layers.values()))
                aux = chunk.get("aux") or {}
                status = str(chunk.get("status", ""))
                m = re.search(r"sha256:[0-9a-f]{64}", str(aux.get("Digest") or ""))
                m = m or (re.search(r"sha256:[0-9a-f]{64}", status) if status.startswith("Digest:") else None)
                if m:
                    digest = m[0]
        except docker.errors.APIError as e:
            raise EngineError(f"{action} of {repository}:{tag} failed: {_explain(e)}") from None
        except requests.exceptions.RequestException as e:
            raise EngineError(f"{action} of {repository}:{tag} failed: {e}") from None
        if not digest:
            raise EngineError(f"{action} of {repository}:{tag} ended without the registry's digest")
        return digest
