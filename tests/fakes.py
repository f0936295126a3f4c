"""An in-memory container engine for fast tests of everything above the engine contract (no daemon, no docker-py).

:class:`FakeEngine` implements :class:`milabox.engine.Engine` and :class:`FakeContainer` implements
:class:`milabox.engine.Container`, with canned answers in the spirit of docker-py's ``fake_api_client``. What a
container "does" is scripted per benchmark (its ``milabox.benchmark`` label) or per image with
:class:`Behaviour`: it writes ``events.jsonl`` into the request's writable ``/results`` mount as the
in-container runtime does (docs/results-format.md), then exits, crashes, is OOM-killed, hangs until its
timeout, is interrupted by Ctrl-C, or loses its engine. Time is a fake clock (``FakeEngine.clock``): nothing
sleeps. The engine records every request, every container and every removal.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from milabox.engine import CONTAINER_LABEL, STOP_GRACE_S, ContainerRequest, Exit, ImageInfo
from milabox.errors import BuildError, EngineError, EngineLost

RESULTS = "/results"
T0 = 1_800_000_000.0  # the fake clock's epoch (Unix seconds) in the events it writes


@dataclass(frozen=True)
class Behaviour:
    """What one fake container does once started.

    Attributes:
        exit_code: its exit code when it ends on its own (an OOM kill makes it 137).
        seconds: how long it runs, on the fake clock (beyond the wait's timeout: it times out).
        rate: the summary rate it reports when it exits 0; None: no summary.
        error: the error line of its ``end`` event (and of its log) when it fails.
        log: what it prints (its log).
        events: events written instead of the generated ones (each gets ``time`` if it lacks one).
        oom_killed: the kernel's OOM killer ends it (events cut short, no summary).
        hang: it never ends on its own: the wait times out.
        interrupt: Ctrl-C arrives while it runs (the wait stops it, as the Docker container does).
        engine_error: the engine fails with this EngineError message, at ``engine_error_at``.
        engine_error_at: ``create``, ``start`` or ``wait``.
        block: the wait blocks (really, in its thread) until the container is stopped, as a long benchmark
            does; an AssertionError after ``seconds`` of real time if nothing stops it.
        gone: ``engine_error`` is a lost connection: the engine raises EngineLost (as the Docker engine does
            when its socket goes during a wait), not a refusal.
    """

    exit_code: int = 0
    seconds: float = 1.0
    rate: float | None = 100.0
    error: str | None = None
    log: str = ""
    events: tuple[dict[str, Any], ...] | None = None
    oom_killed: bool = False
    hang: bool = False
    interrupt: bool = False
    engine_error: str | None = None
    engine_error_at: str = "wait"
    block: bool = False
    gone: bool = False


def ok(rate: float = 100.0, seconds: float = 1.0) -> Behaviour:
    """A benchmark that measures ``rate`` and exits 0."""
    return Behaviour(rate=rate, seconds=seconds)


def crash(error: str = "RuntimeError: boom", code: int = 1, in_events: bool = True) -> Behaviour:
    """A benchmark that fails with ``error`` (in its ``end`` event, or only as its log's last line)."""
    return Behaviour(exit_code=code, rate=None, error=error if in_events else None, log=f"Traceback...\n{error}\n")


def oom() -> Behaviour:
    """A benchmark the kernel's OOM killer ends."""
    return Behaviour(oom_killed=True)


def hang() -> Behaviour:
    """A benchmark that never ends on its own."""
    return Behaviour(hang=True)


def interrupt() -> Behaviour:
    """A benchmark during which the user presses Ctrl-C."""
    return Behaviour(interrupt=True)


def engine_lost(message: str = "the engine stopped answering (connection reset)", at: str = "wait") -> Behaviour:
    """A benchmark during which the engine fails with EngineError ``message`` (at ``create``, ``start``, ``wait``)."""
    return Behaviour(engine_error=message, engine_error_at=at)


def engine_gone(at: str = "wait") -> Behaviour:
    """A benchmark during which the engine stops answering (its connection drops: EngineLost) at ``at``."""
    return Behaviour(engine_error="the Docker engine at fake://engine stopped answering", engine_error_at=at,
                     gone=True)


class FakeContainer:
    """One created fake container; see :class:`milabox.engine.Container` for the contract.

    Attributes:
        id: its id.
        request: what it was created from.
        behaviour: what it does.
        state: ``created``, ``running``, ``exited`` or ``removed``.
        waited_with: the timeout its last wait was given.
        stopped: :meth:`stop` was called.
    """

    def __init__(self, engine: FakeEngine, request: ContainerRequest, behaviour: Behaviour, number: int):
        self._engine, self.request, self.behaviour = engine, request, behaviour
        self.id = f"fake{number:04d}"
        self.state, self.waited_with, self.stopped = "created", None, False
        self._code: int | None = None
        self._log: IO[bytes] | None = None
        self._stopping = threading.Event()

    def start(self, log: IO[bytes] | None = None) -> None:
        """Start it (see :meth:`milabox.engine.Container.start`); raises EngineError when scripted to."""
        self._fail_at("start")
        self._log, self.state = log, "running"
        self._engine.calls.append(("start", self.id))

    def wait(self, timeout: float | None) -> Exit:
        """Run the behaviour to its end; EngineError when scripted to, AssertionError for a hang with no timeout."""
        self.waited_with = timeout
        self._engine.calls.append(("wait", self.id))
        b = self.behaviour
        if b.block:
            if not self._stopping.wait(b.seconds):
                raise AssertionError(f"{self.id} blocked for {b.seconds} s and nothing stopped it")
            return Exit(code=None, interrupted=True)
        try:
            if (b.engine_error is not None and b.engine_error_at == "wait") or b.interrupt:
                self._write_events(finished=False)
                self._fail_at("wait")
                raise KeyboardInterrupt  # as a Ctrl-C raises in the middle of the real wait
            if b.hang or (timeout is not None and b.seconds > timeout):
                if timeout is None:
                    raise AssertionError(f"{self.id} hangs and was waited on with no timeout")
                self._engine.clock += timeout
                self._write_events(finished=False)
                return self._ended(None, timed_out=True)
            self._engine.clock += b.seconds
            self._write_events(finished=not b.oom_killed)
            return self._ended(137 if b.oom_killed else b.exit_code)
        except KeyboardInterrupt:
            return self.stop()

    def stop(self, grace_s: float = STOP_GRACE_S) -> Exit:
        """Stop it: Exit with ``interrupted`` (a blocked wait returns)."""
        self.stopped = True
        self._engine.calls.append(("stop", self.id))
        self._stopping.set()
        return self._ended(None, interrupted=True)

    def inspect(self) -> dict[str, Any]:
        """Its description in ``docker inspect``'s layout (the parts milabox reads); EngineError once removed."""
        if self.state == "removed":
            raise EngineError(f"no such container: {self.id}")
        r = self.request
        return {"Id": self.id, "State": {"Status": self.state, "ExitCode": self._code,
                                         "OOMKilled": self.behaviour.oom_killed and self.state == "exited"},
                "Config": {"Image": r.image, "Env": [f"{k}={v}" for k, v in r.environment.items()],
                           "Labels": dict(r.labels), "User": r.user},
                "HostConfig": {"NetworkMode": r.network_mode, "Memory": r.memory, "ReadonlyRootfs": False,
                               "CpusetCpus": r.cpuset_cpus}}

    def remove(self) -> None:
        """Remove it; never raises, records the removal once."""
        if self.state != "removed":
            self.state = "removed"
            self._engine.removed.append(self.id)

    def __enter__(self) -> FakeContainer:  # noqa: PYI034 (not subclassed)
        """Returns: the container."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Remove it, whatever ended the block."""
        self.remove()

    def _fail_at(self, where: str) -> None:
        if self.behaviour.engine_error is not None and self.behaviour.engine_error_at == where:
            raise (EngineLost if self.behaviour.gone else EngineError)(self.behaviour.engine_error)

    def _ended(self, code: int | None, timed_out: bool = False, interrupted: bool = False) -> Exit:
        if self._log is not None and self.behaviour.log:
            self._log.write(self.behaviour.log.encode())
            self._log.flush()
        self.state, self._code = "exited", code
        oom = bool(self.inspect()["State"]["OOMKilled"])
        return Exit(code=code, timed_out=timed_out, oom_killed=oom, interrupted=interrupted)

    def _write_events(self, finished: bool) -> None:
        folder = next((m.source for m in self.request.mounts if m.target == RESULTS and not m.read_only), None)
        if folder is None:  # a container with nowhere to write (not a benchmark attempt)
            return
        b, env, now = self.behaviour, self.request.environment, T0 + self._engine.clock
        if b.events is not None:
            events = [{"time": now, **e} for e in b.events]
        else:
            name = env.get("MILABOX_BENCHMARK", "")
            events = [{"event": "start", "time": now, "benchmark": name, "size": "smoke", "pid": 1},
                      {"event": "meta", "time": now, "torch": "2.13.0+cpu", "device": {"type": "cpu", "count": 1},
                       "python": "3.11", "hostname": "fake", "threads": 1, "precision": "fp32", "world_size": 1},
                      *({"event": "rate", "time": now, "step": i, "value": b.rate or 1.0, "unit": "items/s"}
                        for i in range(3))]
            if finished and b.exit_code == 0 and b.rate is not None:
                events.append({"event": "summary", "time": now, "rate": b.rate, "unit": "items/s",
                               "items": b.rate * b.seconds, "seconds": b.seconds, "steps": 3, "warmup": 1})
            if finished:
                events.append({"event": "end", "time": now, "status": "ok" if b.exit_code == 0 else "failed",
                               "error": b.error})
        with open(Path(folder) / "events.jsonl", "a", encoding="utf-8") as out:
            out.writelines(json.dumps(e) + "\n" for e in events)


@dataclass
class _Image:
    id: str
    tags: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    digests: list[str] = field(default_factory=list)
    size: int = 1 << 20

    def info(self) -> ImageInfo:
        return ImageInfo(id=self.id, tags=tuple(self.tags), digests=tuple(self.digests), labels=dict(self.labels),
                         size=self.size)


class FakeEngine:
    """An engine in memory; see :class:`milabox.engine.Engine` for each method's contract.

    Args:
        images: tags of the images it holds.
        default: what a container does when nothing is scripted for it.

    Attributes:
        clock: seconds the containers ran, on the fake clock.
        requests: every container request it was given, in order (refused ones too).
        created: every container it created.
        removed: ids of the containers removed, in order.
        calls: (``create``/``start``/``wait``/``stop``, container id) in the order they came, from any thread.
        registry: ``repository:tag`` -> image, for push and pull.
    """

    def __init__(self, images: Iterable[str] = (), default: Behaviour = Behaviour()):
        self.base_url = "fake://engine"
        self.default, self.clock = default, 0.0
        self.requests: list[ContainerRequest] = []
        self.created: list[FakeContainer] = []
        self.removed: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.registry: dict[str, _Image] = {}
        self._images: list[_Image] = []
        self._scripts: dict[str, list[Behaviour]] = {}
        for ref in images:
            self.add_image(ref)

    # ---- scripting (not part of the contract) ----

    def add_image(self, ref: str, labels: Mapping[str, str] | None = None,
                  files: Mapping[str, bytes] | None = None) -> ImageInfo:
        """Hold an image tagged ``ref``, with ``labels`` and ``files`` (path -> content for read_image_files)."""
        image = _Image(self._new_id(ref), [ref], dict(labels or {}), dict(files or {}))
        self._images.append(image)
        return image.info()

    def script(self, key: str, *behaviours: Behaviour) -> None:
        """Say what the containers of ``key``, a benchmark (label) or an image, do: one behaviour each, in order;
        the last goes on for any later container."""
        self._scripts[key] = list(behaviours)

    def _behaviour(self, request: ContainerRequest) -> Behaviour:
        for key in (request.labels.get(CONTAINER_LABEL), request.image):
            queue = self._scripts.get(key or "")
            if queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
        return self.default

    def _new_id(self, ref: str) -> str:
        return "sha256:" + hashlib.sha256(f"{ref}#{len(self._images)}".encode()).hexdigest()

    def _hold(self, image: _Image, ref: str) -> None:
        if image not in self._images:
            self._images.append(image)
        if ref not in image.tags:
            image.tags.append(ref)

    def _find(self, ref: str) -> _Image | None:
        return next((i for i in self._images if ref in i.tags or ref == i.id or ref in i.digests), None)

    # ---- the contract ----

    def version(self) -> dict[str, Any]:
        """A version report like the Docker engine's."""
        return {"Version": "0.0.0-fake", "ApiVersion": "1.45", "Os": "linux", "Arch": "amd64", "KernelVersion": "6"}

    def image(self, ref: str) -> ImageInfo | None:
        """The image by tag, id or digest reference, or None."""
        image = self._find(ref)
        return image.info() if image else None

    def pull(self, ref: str) -> bool:
        """Whether ``ref`` is in the fake registry (then it is held)."""
        if ref not in self.registry:
            return False
        self._hold(self.registry[ref], ref)
        return True

    def tag(self, ref: str, repository: str, tag: str) -> None:
        """Name a held image ``repository:tag`` too; EngineError when it is not held."""
        image = self._find(ref)
        if image is None:
            raise EngineError(f"no such image: {ref}")
        self._hold(image, f"{repository}:{tag}")

    def import_rootfs(self, stream: IO[bytes], repository: str, tag: str) -> str:
        """Read the stream and hold an image ``repository:tag``; its id."""
        stream.read()
        return self.add_image(f"{repository}:{tag}").id

    def build(self, context: Path, tag: str, *, labels: dict[str, str], network_mode: str,
              on_line: Callable[[str], None], on_step: Callable[[int, int, str], None],
              no_cache: bool = False) -> str:
        """Report each line of ``context/Dockerfile`` as a step and hold ``tag``; BuildError without a Dockerfile."""
        dockerfile = Path(context) / "Dockerfile"
        if not dockerfile.is_file():
            raise BuildError("before the first step failed: no Dockerfile in the context")
        steps = [ln for ln in dockerfile.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        for number, instruction in enumerate(steps, 1):
            on_line(f"Step {number}/{len(steps)} : {instruction}")
            on_step(number, len(steps), instruction)
        old = self._find(tag)
        if old is not None:
            old.tags.remove(tag)
        return self.add_image(tag, labels).id

    def container(self, request: ContainerRequest) -> FakeContainer:
        """Create a container of the scripted behaviour; EngineError for an image not held or a failing create."""
        self.requests.append(request)
        if self._find(request.image) is None:
            raise EngineError(f"image {request.image} is not present; build it with `milabox build`")
        behaviour = self._behaviour(request)
        if behaviour.engine_error is not None and behaviour.engine_error_at == "create":
            raise (EngineLost if behaviour.gone else EngineError)(behaviour.engine_error)
        container = FakeContainer(self, request, behaviour, len(self.created))
        self.created.append(container)
        self.calls.append(("create", container.id))
        return container

    def containers(self, label: str = CONTAINER_LABEL) -> list[str]:
        """Ids of the containers not removed that carry ``label`` (a key, or ``key=value``)."""
        key, _, value = label.partition("=")
        return [c.id for c in self.created if c.state != "removed" and key in c.request.labels
                and (not value or c.request.labels[key] == value)]

    def leftovers(self, label: str = CONTAINER_LABEL) -> list[tuple[str, dict[str, str]]]:
        """(id, labels) of the containers not removed that carry ``label`` (as :meth:`containers` selects them)."""
        ids = self.containers(label)
        return [(c.id, dict(c.request.labels)) for c in self.created if c.id in ids]

    def remove_container(self, container_id: str) -> None:
        """Remove a container by id (nothing for one already gone or unknown)."""
        for c in self.created:
            if c.id == container_id:
                c.remove()

    def disk_usage(self) -> list[dict[str, Any]]:
        """Every held image; nothing is shared."""
        return [{"id": i.id, "tags": list(i.tags), "size": i.size, "shared_size": 0} for i in self._images]

    def remove_image(self, ref: str) -> None:
        """Forget an image if held."""
        image = self._find(ref)
        if image is not None:
            self._images.remove(image)

    def read_image_files(self, ref: str, paths: list[str], max_bytes: int = 16 * 2**20) -> dict[str, bytes | None]:
        """The image's files given to :meth:`add_image`, else None; EngineError for an image not held."""
        image = self._find(ref)
        if image is None:
            raise EngineError(f"image {ref} is not present; build it with `milabox build`")
        return {p: (c if (c := image.files.get(p)) is not None and len(c) <= max_bytes else None) for p in paths}

    def save_images(self, refs: Sequence[str], chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The images as one JSON archive, in chunks (EngineError, at the first chunk, for one not held)."""
        images = [self._find(r) for r in refs]
        if None in images:
            raise EngineError(f"the engine could not save {', '.join(refs)}: no such image")
        data = json.dumps([{"tags": i.tags, "labels": i.labels, "size": i.size} for i in images if i]).encode()
        yield from (data[n:n + chunk_size] for n in range(0, len(data), chunk_size))

    def load_images(self, chunks: Iterable[bytes]) -> list[str]:
        """Hold the images of an archive :meth:`save_images` made; their tags (EngineError for anything else)."""
        try:
            saved = json.loads(b"".join(chunks))
        except ValueError:
            raise EngineError("the engine refused the images: not an image archive") from None
        for entry in saved:
            image = _Image(self._new_id(entry["tags"][0]), list(entry["tags"]), dict(entry["labels"]),
                           size=int(entry["size"]))
            self._images.append(image)
        return [t for entry in saved for t in entry["tags"]]

    def push_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """Copy ``repository:tag`` to the fake registry; its digest (EngineError when not held)."""
        ref = f"{repository}:{tag}"
        image = self._find(ref)
        if image is None:
            raise EngineError(f"push of {ref} failed: no such image")
        digest = "sha256:" + hashlib.sha256(f"{image.id}{repository}".encode()).hexdigest()
        if f"{repository}@{digest}" not in image.digests:
            image.digests.append(f"{repository}@{digest}")
        self.registry[ref] = image
        on_progress(image.size, image.size)
        return digest

    def pull_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """Hold ``repository:tag`` from the fake registry; its digest (EngineError when never pushed)."""
        ref = f"{repository}:{tag}"
        if ref not in self.registry:
            raise EngineError(f"pull of {ref} failed: manifest unknown")
        image = self.registry[ref]
        self._hold(image, ref)
        on_progress(image.size, image.size)
        return next(d for d in image.digests if d.startswith(f"{repository}@")).split("@", 1)[1]
