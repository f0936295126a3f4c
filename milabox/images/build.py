"""Building images: a build context per image, labels, the log saved to a file, progress reported."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from milabox import __version__
from milabox.definitions.benchmarks import FRAMEWORKS, Benchmark, all_benchmarks, group_members
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine
from milabox.errors import BuildError
from milabox.images.base import resolve_base
from milabox.images.catalog import catalog_json
from milabox.images.lock import check_lock, lock_path
from milabox.images.naming import benchmark_tag, frameworks_of, groups_of, runnable, runtime_name, runtime_tag
from milabox.images.render import INSTALLERS, TEMPLATES_DIR, dockerfile_hash, render_benchmark, render_runtime
from milabox.images.sources import PackageSources, torch_wheels
from milabox.origin import source_commit
from milabox.resources import runtime_package
from milabox_runtime.cli import CATALOG_NAME

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
# The vendor's lock in the runtime image's build context (the template copies it from there and installs it).
LOCK_IN_CONTEXT = "requirements.lock"


class BuildReporter(Protocol):
    """What a build tells whoever watches it (the CLI shows it; tests may record it)."""

    def begin(self, image: str, log_path: Path) -> None: ...
    def step(self, image: str, step: int, steps: int, instruction: str) -> None: ...
    def line(self, image: str, text: str) -> None: ...
    def end(self, result: BuildResult) -> None: ...


@dataclass(frozen=True)
class BuildResult:
    """One image built.

    Attributes:
        name: ``runtime`` or the benchmark group.
        tag: the image tag.
        image_id: the image id.
        seconds: wall time of the build.
        steps: Dockerfile steps.
        cached_steps: steps the engine took from its cache.
        log_path: the full build log.
    """

    name: str
    tag: str
    image_id: str
    seconds: float
    steps: int
    cached_steps: int
    log_path: Path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the wheelhouse can hold gigabytes: link, don't copy, where possible
    except OSError:
        shutil.copy2(src, dst)


def _labels(name: str, vendor: Vendor, dockerfile: str, extra: dict[str, str], sources: tuple[str, ...]) -> dict[str, str]:
    commit = source_commit(*sources)
    return {"org.opencontainers.image.revision": commit, "milabox.source_commit": commit,
            "milabox.dockerfile_sha256": dockerfile_hash(dockerfile), "milabox.image": name,
            "milabox.vendor": vendor.name, "milabox.version": __version__, **extra}


def _run_build(engine: Engine, name: str, context: Path, tag: str, labels: dict[str, str], log_dir: Path,
               network_mode: str, reporter: BuildReporter, no_cache: bool) -> BuildResult:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{tag.replace('/', '_').replace(':', '_')}.log"
    reporter.begin(tag, log_path)
    start, counts = time.monotonic(), {"steps": 0, "cached": 0}
    with open(log_path, "w") as log:
        def on_line(text: str) -> None:
            log.write(text + "\n")
            log.flush()
            if text.strip() == "---> Using cache":
                counts["cached"] += 1
            reporter.line(tag, text)

        def on_step(step: int, steps: int, instruction: str) -> None:
            counts["steps"] = steps
            # FROM builds nothing, so it never says "Using cache": it counts as cached where every step before it
            # did (the first FROM always; a later stage's FROM reuses the stages built before it).
            if instruction.upper().startswith("FROM ") and counts["cached"] == step - 1:
                counts["cached"] += 1
            reporter.step(tag, step, steps, instruction)

        try:
            image_id = engine.build(context, tag, labels=labels, network_mode=network_mode, on_line=on_line,
                                    on_step=on_step, no_cache=no_cache)
        except BuildError as e:
            raise BuildError(f"build of {name} ({tag}) failed at {e}; full log: {log_path}") from None
    result = BuildResult(name, tag, image_id, time.monotonic() - start, counts["steps"], counts["cached"], log_path)
    reporter.end(result)
    return result


def _uv_binary() -> Path:
    """The host's uv (a milabox dependency), copied into the build stage: no index or wheelhouse needed to get it."""
    try:
        import uv
        return Path(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BuildError("uv is not installed on this host (a milabox dependency): `pip install uv`, "
                             "or build with installer pip") from None
        return Path(found)


def build_runtime(engine: Engine, vendor: Vendor, sources: PackageSources, reporter: BuildReporter, log_dir: Path,
                  base_image: str | None = None, no_cache: bool = False, tag: str | None = None,
                  installer: str = INSTALLERS[0], framework: str = FRAMEWORKS[0]) -> BuildResult:
    """Build a vendor's runtime image for a framework (base + Python + torch or jax + the in-container runtime).

    Args:
        engine: the engine.
        vendor: the vendor.
        sources: package index, wheelhouse, CA bundle, build networking.
        reporter: receives progress.
        log_dir: folder for the build log.
        base_image: base chosen by the user instead of the vendor's.
        no_cache: rebuild every layer.
        tag: the image tag (default: the vendor's runtime tag).
        installer: what installs the lock, one of :data:`~milabox.images.render.INSTALLERS` (default ``uv``).
        framework: ``torch`` (default) or ``jax`` (its own lock and tag; see :func:`~milabox.images.naming.runtime_tag`).

    Returns:
        The built image.

    Raises:
        ConfigError: the vendor's lock is missing or out of date, or the installer is unknown.
        BaseImageMissing: no base image is present or pullable.
        BuildError: a step failed (the message names the step and points to the log).
    """
    lock = check_lock(vendor, list(all_benchmarks().values()), framework)
    base = resolve_base(engine, vendor, base_image)
    # A base image that ships torch needs no torch wheel (torch_source "image"; the Dockerfile checks its version),
    # and a JAX runtime none at all.
    torch = framework == FRAMEWORKS[0]
    wheels = torch_wheels(sources, vendor) if torch and not vendor.torch_from_image else []
    dockerfile = render_runtime(vendor, base, sources, [w.name for w in wheels], installer, framework)
    with tempfile.TemporaryDirectory(prefix="milabox-build-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        shutil.copytree(runtime_package(), context / "milabox_runtime", ignore=_IGNORE)
        shutil.copy2(lock, context / LOCK_IN_CONTEXT)
        if installer == "uv":
            shutil.copy2(_uv_binary(), context / "uv")
        if sources.ca_bundle:
            shutil.copy2(sources.ca_bundle, context / "ca-bundle.crt")
        (context / "wheelhouse").mkdir()
        for wheel in wheels:
            _place(wheel, context / "wheelhouse" / wheel.name)
        base_info = engine.image(base)
        name = runtime_name(framework)
        labels = _labels(name, vendor, dockerfile, {"milabox.base_image": base,
                                                         "milabox.base_image_id": base_info.id if base_info else "",
                                                         "milabox.lock": lock.name,
                                                         "milabox.lock_sha256": _sha256(lock)},
                         (str(runtime_package()), str(TEMPLATES_DIR / "runtime.Dockerfile.j2"),
                          str(vendor.path), str(lock_path(vendor, framework))))
        return _run_build(engine, name, context, tag or runtime_tag(vendor, framework), labels, log_dir,
                          sources.network_mode, reporter, no_cache)


def build_group(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, sources: PackageSources,
                reporter: BuildReporter, log_dir: Path, no_cache: bool = False) -> BuildResult:
    """Build one benchmark group's image FROM the vendor's runtime image (which must exist).

    Args:
        engine: the engine.
        benchmarks: the group's benchmarks.
        vendor: the vendor.
        sources: build networking.
        reporter: receives progress.
        log_dir: folder for the build log.
        no_cache: rebuild every layer.

    Returns:
        The built image.

    Raises:
        BuildError: a step failed (the message names the benchmark, the step and the log).
    """
    group = benchmarks[0].group
    dockerfile = render_benchmark(benchmarks, vendor)
    with tempfile.TemporaryDirectory(prefix="milabox-build-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        shutil.copytree(benchmarks[0].folder, context / "benchmark", ignore=_IGNORE)
        (context / CATALOG_NAME).write_text(catalog_json(benchmarks, vendor))
        runtime = engine.image(runtime_tag(vendor, benchmarks[0].framework))
        labels = _labels(group, vendor, dockerfile, {"milabox.runtime_image_id": runtime.id if runtime else ""},
                         (str(benchmarks[0].folder), str(TEMPLATES_DIR / "benchmark.Dockerfile.j2")))
        return _run_build(engine, group, context, benchmark_tag(group, vendor), labels, log_dir,
                          sources.network_mode, reporter, no_cache)


def build(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, sources: PackageSources,
          reporter: BuildReporter, log_dir: Path, base_image: str | None = None,
          no_cache: bool = False, on_skip: Callable[[Benchmark, str], None] | None = None) -> list[BuildResult]:
    """Build the runtime image of each framework the selection uses and every selected benchmark group's image for
    one vendor.

    Benchmarks the vendor is excluded from are skipped (``on_skip`` hears why).

    Returns:
        The runtime images' results (torch first), then one per group.

    Raises:
        BaseImageMissing, BuildError: see :func:`build_runtime` and :func:`build_group`.
    """
    supported = runnable(benchmarks, vendor, on_skip)
    results = [build_runtime(engine, vendor, sources, reporter, log_dir, base_image, no_cache, framework=framework)
               for framework in frameworks_of(supported)]
    for group in groups_of(supported):
        results.append(build_group(engine, group_members(group), vendor, sources, reporter, log_dir, no_cache))
    return results

