"""Image names, and which images a selection of benchmarks needs: the one place that knows milabox's tag format.

Every benchmark group (folder) has one image per vendor, ``milabox/<group>:<vendor>-<version>``, built FROM
the vendor's runtime image of the group's framework: ``milabox/runtime:<vendor>-<version>`` (torch) or
``milabox/runtime-jax:<vendor>-<version>`` (jax).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from milabox import __version__
from milabox.definitions.benchmarks import FRAMEWORKS, Benchmark
from milabox.definitions.vendors import Vendor
from milabox.errors import ImageNotBuilt, RunError

if TYPE_CHECKING:
    from milabox.engine import Engine, ImageInfo

REPOSITORY = "milabox"
RUNTIME = "runtime"  # the name of the (torch) runtime image among a selection's images


def runtime_name(framework: str = FRAMEWORKS[0]) -> str:
    """Name of a framework's runtime image among a selection's images: ``runtime`` (torch), ``runtime-jax``."""
    return RUNTIME if framework == FRAMEWORKS[0] else f"{RUNTIME}-{framework}"


def runtime_tag(vendor: Vendor, framework: str = FRAMEWORKS[0]) -> str:
    """Tag of a vendor's runtime image for a framework, e.g. ``milabox/runtime:cpu-0.1.0``,
    ``milabox/runtime-jax:cuda-0.1.0``."""
    return f"{REPOSITORY}/{runtime_name(framework)}:{vendor.name}-{__version__}"


def benchmark_tag(group: str, vendor: Vendor) -> str:
    """Tag of a benchmark group's image for a vendor, e.g. ``milabox/bert:cuda-0.1.0``."""
    return f"{REPOSITORY}/{group}:{vendor.name}-{__version__}"


def exclusion(bench: Benchmark, vendor: Vendor) -> str:
    """Why the benchmark does not run on the vendor (its own ``excluded_vendors``, or the vendor offers no runtime of
    its framework), or empty where it runs."""
    if not bench.supports(vendor.name):
        return bench.excluded_vendors[vendor.name]
    why = vendor.framework_excluded(bench.framework)
    return f"vendor {vendor.name} has no {bench.framework} runtime: {why}" if why else ""


def runnable(benchmarks: Sequence[Benchmark], vendor: Vendor,
             on_skip: Callable[[Benchmark, str], None] | None = None) -> list[Benchmark]:
    """The benchmarks of a selection that run on the vendor; ``on_skip`` hears each excluded one and why."""
    kept = []
    for bench in benchmarks:
        why = exclusion(bench, vendor)
        if not why:
            kept.append(bench)
        elif on_skip is not None:
            on_skip(bench, why)
    return kept


def frameworks_of(benchmarks: Sequence[Benchmark]) -> list[str]:
    """The frameworks a selection uses, in ``FRAMEWORKS`` order (torch alone for an empty selection)."""
    used = {b.framework for b in benchmarks}
    return [f for f in FRAMEWORKS if f in used] or [FRAMEWORKS[0]]


def groups_of(benchmarks: Sequence[Benchmark]) -> dict[str, list[Benchmark]]:
    """Benchmarks by group (image), keeping order."""
    groups: dict[str, list[Benchmark]] = {}
    for bench in benchmarks:
        groups.setdefault(bench.group, []).append(bench)
    return groups


@dataclass(frozen=True)
class NamedImage:
    """One image a selection needs.

    Attributes:
        name: ``runtime`` or the benchmark group.
        tag: its local tag, e.g. ``milabox/matmul:cpu-0.1.0``.
    """

    name: str
    tag: str


def images_for(benchmarks: Sequence[Benchmark], vendor: Vendor) -> tuple[list[NamedImage], list[Benchmark]]:
    """The images a selection needs on a vendor: its runtime image per framework, then one per benchmark group.

    Returns:
        (images, the benchmarks of the selection that run on the vendor).

    Raises:
        RunError: none of the benchmarks runs on the vendor.
    """
    supported = runnable(benchmarks, vendor)
    if not supported:
        raise RunError(f"none of the selected benchmarks runs on vendor {vendor.name}")
    images = [NamedImage(runtime_name(f), runtime_tag(vendor, f)) for f in frameworks_of(supported)]
    images += [NamedImage(group, benchmark_tag(group, vendor)) for group in groups_of(supported)]
    return images, supported


def require_built(engine: Engine, image: NamedImage, vendor: Vendor, where: str = "") -> ImageInfo:
    """The local image, or one line saying how to get it.

    Args:
        engine: the engine that should hold it.
        image: the image.
        vendor: its vendor (named in the advice).
        where: e.g. ``on node gpu-07`` (added to the message).

    Raises:
        ImageNotBuilt: the engine does not have it.
    """
    info = engine.image(image.tag)
    if info is None:
        build = "" if image.name.startswith(RUNTIME) else f" {image.name}"
        raise ImageNotBuilt(f"image {image.tag} is not built{' ' + where if where else ''}; run `milabox build{build} "
                            f"--vendor {vendor.name}` (or `milabox load` a bundle, `milabox pull` from a registry)")
    return info
