"""The container engine contract: what milabox asks of an engine, and nothing more.

Everything outside this package describes what it wants as plain data (:class:`ContainerRequest`) and calls
an :class:`Engine`: ``container`` (create; then start, wait, stop, remove), ``image``, ``build``,
``containers``, and the image transfers of bundles and registries. :mod:`milabox.engine.docker` implements
it with docker-py (:func:`connect` returns that one); tests implement it in memory (``tests/fakes.py``).

Importing this package needs no engine and does not import docker-py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, Self

from milabox.engine.requests import BindMount, ContainerRequest, Exit, ImageInfo

if TYPE_CHECKING:
    from milabox.engine.docker import DockerEngine

__all__ = ["CONTAINER_LABEL", "LABEL_PREFIX", "STOP_GRACE_S", "BindMount", "Container", "ContainerRequest",
           "Engine", "Exit", "ImageInfo", "connect"]

LABEL_PREFIX = "milabox."
CONTAINER_LABEL = "milabox.benchmark"  # every container milabox creates carries it
# A stopped benchmark gets SIGTERM, then SIGKILL this many seconds later: short, because a user who pressed
# Ctrl-C waits for it, and a benchmark has nothing to save (its events are written as they happen).
STOP_GRACE_S = 3


class Container(Protocol):
    """A created container; used as a context manager so it is removed whatever happens.

    Attributes:
        id: the engine's id of the container.
    """

    id: str

    def start(self, log: IO[bytes] | None = None) -> None:
        """Start the container; with ``log``, copy its output (stdout and stderr) there as it comes.

        Args:
            log: a binary file the output is written to, or None to drop it.

        Raises:
            EngineError: the engine refused to start it (e.g. a device or driver is missing).
        """

    def wait(self, timeout: float | None) -> Exit:
        """Block until the container exits or ``timeout`` seconds pass; kill it at the timeout.

        A KeyboardInterrupt while waiting becomes :meth:`stop`: it never propagates.

        Args:
            timeout: seconds to wait; None waits for as long as the container runs.

        Returns:
            How it ended: its exit code, or ``timed_out`` / ``interrupted`` with no code; ``oom_killed``
            when the kernel's OOM killer ended it.

        Raises:
            EngineError: the engine failed while the container ran (an implementation may report a lost
                connection as a timeout instead).
        """

    def stop(self, grace_s: float = STOP_GRACE_S) -> Exit:
        """Stop the container because the user asked to: SIGTERM, then SIGKILL after ``grace_s`` seconds.

        Args:
            grace_s: seconds between SIGTERM and SIGKILL.

        Returns:
            How it ended (``interrupted``), whatever its process does with SIGTERM.

        Raises:
            Nothing: a container already gone is stopped.
        """

    def inspect(self) -> dict[str, Any]:
        """The engine's full description of the container, in ``docker inspect``'s layout.

        Returns:
            The description (``State``, ``Config``, ``HostConfig``...).

        Raises:
            EngineError or the engine's own errors: the container is gone or the engine does not answer.
        """

    def remove(self) -> None:
        """Remove the container, killing it if it still runs.

        Raises:
            Nothing: a container already gone is removed.
        """

    def __enter__(self) -> Self:
        """Enter the block that owns the container.

        Returns:
            The container itself.
        """

    def __exit__(self, *exc: object) -> None:
        """Remove the container (:meth:`remove`), whatever ended the block.

        Args:
            exc: the exception that ended the block, if any (never suppressed).
        """


class Engine(Protocol):
    """A container engine, as milabox uses it.

    Attributes:
        base_url: where the engine answers (shown by ``milabox doctor``).
    """

    base_url: str

    def version(self) -> dict[str, Any]:
        """The engine's version report.

        Returns:
            At least ``Version``, ``ApiVersion``, ``Os``, ``Arch`` and ``KernelVersion`` where known.

        Raises:
            Whatever the engine's client raises when the engine stops answering (callers treat it as best effort).
        """

    def image(self, ref: str) -> ImageInfo | None:
        """Describe a local image.

        Args:
            ref: a tag, an id, or ``repo@sha256:...``.

        Returns:
            The image, or None when it is not present.

        Raises:
            EngineError: the engine refused to answer.
        """

    def pull(self, ref: str) -> bool:
        """Try to pull an image.

        Args:
            ref: the image reference.

        Returns:
            Whether it worked (an offline machine simply returns False).

        Raises:
            Nothing.
        """

    def tag(self, ref: str, repository: str, tag: str) -> None:
        """Give a local image another name, ``repository:tag``.

        Args:
            ref: the image.
            repository: the new name's repository.
            tag: the new name's tag.

        Raises:
            The engine's own error where the image is missing.
        """

    def import_rootfs(self, stream: IO[bytes], repository: str, tag: str) -> str:
        """Import a root filesystem tar stream as an image (``docker import``).

        Args:
            stream: the tar archive.
            repository: the image's repository.
            tag: the image's tag.

        Returns:
            The image id.

        Raises:
            EngineError: the engine refused the archive.
        """

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

    def container(self, request: ContainerRequest) -> Container:
        """Create (not start) a container from a request.

        Args:
            request: everything about the container.

        Returns:
            The created container (use it as a context manager).

        Raises:
            EngineError: the image is missing or the engine refused the request (the message says why).
        """

    def containers(self, label: str = CONTAINER_LABEL) -> list[str]:
        """Ids of all containers, running or not, carrying a label.

        Args:
            label: a label key, or ``key=value``.

        Returns:
            The container ids.

        Raises:
            The engine's own error when it does not answer.
        """

    def leftovers(self, label: str = CONTAINER_LABEL) -> list[tuple[str, dict[str, str]]]:
        """Every container, running or not, carrying a label, with its labels (to find dead runs' containers).

        Args:
            label: a label key, or ``key=value``.

        Returns:
            (container id, labels) pairs.
        """

    def remove_container(self, container_id: str) -> None:
        """Remove a container by id, killing it if it runs; nothing for one already gone.

        Args:
            container_id: the container.
        """

    def disk_usage(self) -> list[dict[str, Any]]:
        """Every local image with its tags, total size and the part shared with other images.

        Returns:
            One dict an image: ``id``, ``tags``, ``size``, ``shared_size`` (bytes; -1 where unknown).

        Raises:
            The engine's own error when it does not answer.
        """

    def remove_image(self, ref: str) -> None:
        """Remove a local image if present.

        Args:
            ref: the image.

        Raises:
            The engine's own error when it refuses (e.g. a container uses the image).
        """

    def read_image_files(self, ref: str, paths: list[str], max_bytes: int = 16 * 2**20) -> dict[str, bytes | None]:
        """Read files out of an image without running it.

        Args:
            ref: image tag or id.
            paths: absolute paths inside the image.
            max_bytes: a larger file reads as None.

        Returns:
            path -> content; None for a path the image lacks (or that is not a regular file, or is too large).

        Raises:
            EngineError: the image is missing or the engine refused.
        """

    def save_images(self, refs: Sequence[str], chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream several images as one ``docker save`` tar (shared layers once).

        Args:
            refs: image tags (kept in the archive, so a load restores them).
            chunk_size: bytes per chunk.

        Returns:
            The archive, chunk by chunk (a generator: nothing is held in memory).

        Raises:
            EngineError: an image is missing, or the engine failed during the export.
        """

    def load_images(self, chunks: Iterable[bytes]) -> list[str]:
        """Load an archive :meth:`save_images` made, from a stream.

        Args:
            chunks: the archive.

        Returns:
            What the engine loaded: tags, or ``sha256:...`` ids of untagged images.

        Raises:
            EngineError: the engine refused the archive.
        """

    def push_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """Push ``repository:tag`` to its registry (no credentials).

        Args:
            repository: e.g. ``127.0.0.1:5000/team/matmul``.
            tag: e.g. ``cpu-0.1.0``.
            on_progress: called with (bytes done, bytes known so far).

        Returns:
            The manifest digest the registry stored, ``sha256:...``.

        Raises:
            EngineError: the registry or engine refused the push.
        """

    def pull_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """Pull ``repository:tag`` (no credentials); unlike :meth:`pull`, a failure says why.

        Args:
            repository: the image's repository.
            tag: its tag.
            on_progress: called with (bytes done, bytes known so far).

        Returns:
            The manifest digest, ``sha256:...``.

        Raises:
            EngineError: the registry or engine refused the pull.
        """


def connect(base_url: str | None = None) -> DockerEngine:
    """Connect to the Docker engine (the one implementation milabox ships).

    Args:
        base_url: engine address; default ``$DOCKER_HOST`` or ``unix:///var/run/docker.sock``.

    Returns:
        The connected engine.

    Raises:
        EngineError: nothing answers there (the message says what was tried and how to start one).
    """
    from milabox.engine.docker import DockerEngine  # docker-py only when an engine is wanted

    return DockerEngine(base_url)
