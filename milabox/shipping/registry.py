"""Registries: push a selection's images to ``HOST[:PORT]/PREFIX`` and pull them back, by digest.

Local ``milabox/<name>:<tag>`` is ``HOST[:PORT]/PREFIX/<name>:<tag>`` in the registry. After a push or a pull
the engine knows each image's registry digest (its RepoDigests), and ``milabox run`` then starts and records
images as ``HOST/PREFIX/<name>@sha256:...``: a run names the exact bytes it ran, whatever a tag points to later.
No credentials are handled: the registry is local, open, or the engine is already logged in to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine
from milabox.errors import ConfigError, ShipError
from milabox.images.naming import REPOSITORY, images_for, require_built
from milabox.shipping.archive import QuietTransfer, TransferReporter

_HOST = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?$|^[A-Za-z0-9-]+:[0-9]{1,5}$")
_PATH = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Registry:
    """A registry and the path under which milabox images live there.

    Attributes:
        host: ``HOST[:PORT]``.
        prefix: the repository path that replaces ``milabox`` (default ``milabox``).
    """

    host: str
    prefix: str

    def remote(self, local_tag: str) -> tuple[str, str]:
        """The registry's (repository, tag) for a local ``milabox/<name>:<tag>``."""
        repository, _, tag = local_tag.rpartition(":")
        name = repository.split("/", 1)[1] if repository.startswith(f"{REPOSITORY}/") else repository
        return f"{self.host}/{self.prefix}/{name}", tag

    def __str__(self) -> str:
        return f"{self.host}/{self.prefix}"


def parse_registry(value: str) -> Registry:
    """Read ``--registry HOST[:PORT][/PREFIX]``.

    Raises:
        ConfigError: the host is not a registry host (it needs a dot, a port or ``localhost``, else the engine
            would read it as a Docker Hub user) or the prefix is not a lowercase repository path.
    """
    host, _, prefix = value.strip().strip("/").partition("/")
    if not _HOST.match(host):
        raise ConfigError(f"--registry: {value!r} is not HOST[:PORT]/PREFIX; the host needs a dot, a port or to be "
                          "localhost (e.g. 127.0.0.1:5000/milabox or registry.example.com/team)")
    prefix = prefix or REPOSITORY
    if not _PATH.match(prefix):
        raise ConfigError(f"--registry: prefix {prefix!r} must be lowercase letters, digits and . _ - separated "
                          "by / (e.g. team/milabox)")
    return Registry(host, prefix)


@dataclass(frozen=True)
class Transferred:
    """One image pushed or pulled.

    Attributes:
        local: its local tag, e.g. ``milabox/matmul:cpu-0.1.0``.
        remote: the registry tag, e.g. ``127.0.0.1:5000/team/matmul:cpu-0.1.0``.
        digest_ref: the reference runs now use, ``127.0.0.1:5000/team/matmul@sha256:...``.
        image_id: the local image id.
    """

    local: str
    remote: str
    digest_ref: str
    image_id: str


class _Progress:
    """Turns the engine's per-layer byte counts into one transfer for the reporter."""

    def __init__(self, reporter: TransferReporter, what: str):
        self.reporter, self.what, self.done = reporter, what, 0
        reporter.transfer_started(what, None)

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        self.reporter.transfer_advanced(self.what, done)

    def end(self) -> None:
        self.reporter.transfer_ended(self.what, self.done)


def _check_digest(engine: Engine, local: str, repository: str, digest: str) -> tuple[str, str]:
    info = engine.image(local)
    ref = f"{repository}@{digest}"
    if info is None or ref not in info.digests:
        raise ShipError(f"after the transfer, {local} does not carry the registry digest {ref}")
    return ref, info.id


def push(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, registry: Registry,
         reporter: TransferReporter | None = None) -> list[Transferred]:
    """Tag and push the runtime image and the selection's benchmark images.

    Args:
        engine: the engine holding the built images.
        benchmarks: the selection.
        vendor: the vendor.
        registry: where to push.
        reporter: hears each push's progress (bytes of layers sent).

    Returns:
        One entry per image, with the digest reference runs now use.

    Raises:
        ImageNotBuilt: an image is not built (checked before anything is pushed).
        EngineError: the registry or the engine refused a push.
    """
    reporter = reporter or QuietTransfer()
    images, _ = images_for(benchmarks, vendor)
    for image in images:
        require_built(engine, image, vendor)
    done = []
    for image in images:
        repository, tag = registry.remote(image.tag)
        engine.tag(image.tag, repository, tag)
        progress = _Progress(reporter, f"pushing {repository}:{tag}")
        digest = engine.push_image(repository, tag, progress)
        progress.end()
        ref, image_id = _check_digest(engine, image.tag, repository, digest)
        done.append(Transferred(image.tag, f"{repository}:{tag}", ref, image_id))
    return done


def pull(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, registry: Registry,
         reporter: TransferReporter | None = None) -> list[Transferred]:
    """Pull the runtime image and the selection's benchmark images, and tag them as ``milabox run`` expects.

    Args:
        engine: the engine to pull into.
        benchmarks: the selection.
        vendor: the vendor.
        registry: where to pull from.
        reporter: hears each pull's progress.

    Returns:
        One entry per image, with the digest reference runs now use.

    Raises:
        EngineError: the registry or the engine refused a pull (e.g. the image was never pushed there).
    """
    reporter = reporter or QuietTransfer()
    images, _ = images_for(benchmarks, vendor)
    done = []
    for image in images:
        repository, tag = registry.remote(image.tag)
        progress = _Progress(reporter, f"pulling {repository}:{tag}")
        digest = engine.pull_image(repository, tag, progress)
        progress.end()
        local_repository, _, local_tag = image.tag.rpartition(":")
        engine.tag(f"{repository}:{tag}", local_repository, local_tag)
        ref, image_id = _check_digest(engine, image.tag, repository, digest)
        done.append(Transferred(image.tag, f"{repository}:{tag}", ref, image_id))
    return done
