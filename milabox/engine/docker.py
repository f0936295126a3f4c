"""The Docker implementation of the engine contract (:mod:`milabox.engine`), through docker-py.

The only module, with :mod:`milabox.engine.transfer`, that talks to the container engine. ``Engine`` and
``Container`` here are the old names of :class:`DockerEngine` and :class:`DockerContainer`; the data types and
constants are re-exported for the callers that import them from here.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions

from milabox.engine import CONTAINER_LABEL, LABEL_PREFIX, STOP_GRACE_S
from milabox.engine.requests import BindMount, ContainerRequest, Exit, ImageInfo
from milabox.engine.transfer import DockerTransfers, explain
from milabox.errors import BuildError, EngineError, EngineLost

__all__ = ["CONTAINER_LABEL", "LABEL_PREFIX", "STOP_GRACE_S", "BindMount", "Container", "ContainerRequest",
           "DockerContainer", "DockerEngine", "Engine", "Exit", "ImageInfo"]

_ENGINE_STOP_CODES = (143, 137)  # what a container gets when a stopping engine stops it (SIGTERM, then SIGKILL)


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


class DockerContainer:
    """A created container; use as a context manager so it is removed whatever happens."""

    def __init__(self, engine: DockerEngine, handle: Any):
        self._engine, self._handle = engine, handle
        self.id: str = handle.id
        self._log_thread: threading.Thread | None = None

    def start(self, log: IO[bytes] | None = None) -> None:
        """See :meth:`milabox.engine.Container.start` (the contract documents it)."""
        try:
            self._handle.start()
        except docker.errors.APIError as e:
            raise EngineError(f"the engine could not start the container: {explain(e)}") from None
        if log is not None:
            stream = self._handle.logs(stream=True, follow=True)
            self._log_thread = threading.Thread(target=_copy, args=(stream, log), daemon=True)
            self._log_thread.start()

    def wait(self, timeout: float | None) -> Exit:
        """See :meth:`milabox.engine.Container.wait` (the contract documents it)."""
        try:
            result = self._handle.wait(timeout=timeout)
            code, timed_out = int(result.get("StatusCode", -1)), False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            # docker-py reports a wait's read timeout on a unix socket as a ConnectionError too: ask the engine.
            if not self._engine.answers():
                raise EngineLost(self._engine.lost_message()) from None
            self._quietly(lambda: self._handle.kill())
            code, timed_out = None, True
        except KeyboardInterrupt:
            return self.stop()
        if code in _ENGINE_STOP_CODES and self._engine_stopping():
            raise EngineLost(self._engine.lost_message())
        return self._ended(code, timed_out=timed_out)

    def _engine_stopping(self, within_s: float = 5.0) -> bool:
        # A stopping dockerd stops its containers first and still answers for a moment: a SIGTERM/SIGKILL end that
        # is not an OOM kill is the engine going when it stops answering within a few seconds.
        try:
            if self.inspect().get("State", {}).get("OOMKilled"):
                return False
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return not self._engine.answers()
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if not self._engine.answers(settle_s=0.5):
                return True
        return False

    def stop(self, grace_s: float = STOP_GRACE_S) -> Exit:
        """See :meth:`milabox.engine.Container.stop` (the contract documents it)."""
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
        """See :meth:`milabox.engine.Container.inspect` (the contract documents it)."""
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

    def __enter__(self) -> DockerContainer:  # noqa: PYI034 (not subclassed)
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


class DockerEngine(DockerTransfers):
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

    def answers(self, settle_s: float = 0.0) -> bool:
        """Whether the engine answers a ping, asked after ``settle_s`` seconds (for an engine that may be stopping).

        Returns:
            True when it answered.
        """
        time.sleep(settle_s)
        try:
            return bool(self.client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    def lost_message(self) -> str:
        """Returns: the one line that says this engine was lost (its address)."""
        return f"the Docker engine at {self.base_url} stopped answering"

    def leftovers(self, label: str = CONTAINER_LABEL) -> list[tuple[str, dict[str, str]]]:
        """Returns: (id, labels) of every container, running or not, carrying ``label`` (a key or ``key=value``)."""
        # The low-level listing: one request, no per-container inspect that a container removed meanwhile would fail.
        return [(c["Id"], dict(c.get("Labels") or {})) for c in self.client.api.containers(all=True,
                                                                                         filters={"label": label})]

    def remove_container(self, container_id: str) -> None:
        """Remove a container by id (killing it if it runs); nothing for one already gone."""
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True)

    def version(self) -> dict[str, Any]:
        """See :meth:`milabox.engine.Engine.version` (the contract documents it)."""
        return self.client.version()

    def image(self, ref: str) -> ImageInfo | None:
        """See :meth:`milabox.engine.Engine.image` (the contract documents it)."""
        try:
            img = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot inspect image {ref}: {explain(e)}") from None
        return ImageInfo(id=img.id, tags=tuple(img.tags), digests=tuple(img.attrs.get("RepoDigests") or ()),
                         labels=dict(img.labels or {}), size=int(img.attrs.get("Size") or 0))

    def pull(self, ref: str) -> bool:
        """See :meth:`milabox.engine.Engine.pull` (the contract documents it)."""
        try:
            self.client.images.pull(ref)
            return True
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return False

    def tag(self, ref: str, repository: str, tag: str) -> None:
        """See :meth:`milabox.engine.Engine.tag` (the contract documents it)."""
        self.client.images.get(ref).tag(repository, tag)

    def import_rootfs(self, stream: IO[bytes], repository: str, tag: str) -> str:
        """See :meth:`milabox.engine.Engine.import_rootfs` (the contract documents it)."""
        try:
            out = self.client.api.import_image_from_stream(stream, repository=repository, tag=tag)
        except docker.errors.APIError as e:
            raise EngineError(f"the engine refused the root filesystem: {explain(e)}") from None
        img = self.image(f"{repository}:{tag}")
        if img is None:
            raise EngineError(f"import of {repository}:{tag} left no image (engine said: {str(out)[:200]})")
        return img.id

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str,
              on_line: Callable[[str], None], on_step: Callable[[int, int, str], None],
              no_cache: bool = False) -> str:
        """See :meth:`milabox.engine.Engine.build` (the contract documents it)."""
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
            raise BuildError(f"the engine refused the build: {explain(e)}") from None
        if not image_id:
            info = self.image(tag)
            if info is None:
                raise BuildError("the build ended without producing an image")
            image_id = info.id
        return image_id

    def container(self, request: ContainerRequest) -> DockerContainer:
        """See :meth:`milabox.engine.Engine.container` (the contract documents it)."""
        try:
            handle = self.client.containers.create(request.image, **request.docker_kwargs())
        except requests.exceptions.ConnectionError:
            raise EngineLost(self.lost_message()) from None
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {request.image} is not present; build it with `milabox build`") from None
        except docker.errors.APIError as e:
            raise EngineError(f"the engine refused to create a container: {explain(e)}") from None
        return DockerContainer(self, handle)

    def disk_usage(self) -> list[dict[str, Any]]:
        """See :meth:`milabox.engine.Engine.disk_usage` (the contract documents it)."""
        return [{"id": img["Id"], "tags": img.get("RepoTags") or [], "size": int(img.get("Size") or 0),
                 "shared_size": int(img.get("SharedSize") if img.get("SharedSize") is not None else -1)}
                for img in self.client.df().get("Images") or []]

    def containers(self, label: str = CONTAINER_LABEL) -> list[str]:
        """See :meth:`milabox.engine.Engine.containers` (the contract documents it)."""
        return [c["Id"] for c in self.client.api.containers(all=True, filters={"label": label})]

    def remove_image(self, ref: str) -> None:
        """See :meth:`milabox.engine.Engine.remove_image` (the contract documents it)."""
        try:
            self.client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass


#: The names callers used before the contract: ``Engine()`` connects to Docker.
Engine = DockerEngine
Container = DockerContainer
