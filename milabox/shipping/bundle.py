"""Bundles for vendors and air-gapped sites: the images of a selection, saved (not rebuilt), in one checked archive.

A bundle (see docs/bundles.md) is a :mod:`milabox.shipping.archive` file with four parts::

    README.txt     what it holds and the one command to run on the target
    bundle.json    manifest: vendor, benchmarks, each image's tag, id, digests and size, milabox version, commit
    images.tar     one ``docker save`` of the runtime image and every benchmark group's image (shared layers once)
    SHA256SUMS     the SHA-256 of every other part

``load`` checks every byte before the engine sees any, then streams ``images.tar`` into it and checks that each
loaded tag has the id the manifest names.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milabox import __version__
from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine
from milabox.errors import ShipError
from milabox.images.catalog import docker_run_flags
from milabox.images.naming import NamedImage, images_for, require_built
from milabox.origin import host_facts
from milabox.shipping.archive import (
    ArchiveWriter,
    Part,
    QuietTransfer,
    TransferReporter,
    read_part,
    read_small_part,
    scan,
)
from milabox.shipping.manifest import check_manifest
from milabox_runtime.cli import docker_run_line

BUNDLE_FORMAT = 1
BUNDLE_KIND = "milabox-bundle"
README_PART = "README.txt"
MANIFEST_PART = "bundle.json"
IMAGES_PART = "images.tar"


def _describe(engine: Engine, images: Sequence[NamedImage], vendor: Vendor) -> list[dict[str, Any]]:
    described = []
    for image in images:
        info = require_built(engine, image, vendor)
        described.append({"name": image.name, "tag": image.tag, "id": info.id, "digests": list(info.digests),
                          "size": info.size, "source_commit": info.labels.get("milabox.source_commit", "")})
    return described


def _estimate(described: Sequence[dict[str, Any]]) -> int:
    # Every benchmark image is FROM the runtime image: the save holds the runtime's layers once.
    runtime = described[0]["size"]
    return runtime + sum(max(0, d["size"] - runtime) for d in described[1:])


def _readme(manifest: dict[str, Any], file_name: str, target: Vendor) -> str:
    benches = " ".join(manifest["benchmarks"])
    vendor = manifest["vendor"]
    lines = [
        f"milabox bundle: {benches} for vendor {vendor}",
        (f"made {manifest['created']} on {manifest['host']} by milabox {manifest['milabox_version']} "
         f"(commit {manifest['source_commit']})"),
        "",
        "On the target machine (Docker engine running, milabox of the same version installed), run:",
        "",
        f"    milabox load {file_name} && milabox run --vendor {vendor} {benches}",
        "",
        "`milabox load` checks the SHA-256 of every part before loading anything and refuses a damaged or",
        "incomplete copy. Then send the results back:",
        "",
        "    milabox results pack runs/<the run folder> -o results.tar",
        "",
        "Images (also in bundle.json):",
        *(f"    {i['tag']}  {i['id']}  {i['size'] / 1e9:.2f} GB" for i in manifest["images"]),
        "",
        f"Without milabox: `tar -xf {file_name} && sha256sum -c SHA256SUMS && docker load -i images.tar`.",
        "Each benchmark image then says what it holds and how to run it: `docker run --rm IMAGE`. With the flags",
        f"milabox itself passes on {vendor} (milabox/vendors/{vendor}.toml [passthrough]):",
        "",
        "    mkdir -p results",
        f"    {docker_run_line({'docker_run': docker_run_flags(target), 'image': 'IMAGE'}, 'run', 'BENCHMARK')}",
        "",
        "which writes results/events.jsonl (`--size full` for the full size). Send it back as a plain",
        "`tar -cf results.tar results/`; `milabox results adopt results.tar` turns it into a run folder.",
    ]
    return "\n".join(lines) + "\n"


def make_bundle(engine: Engine, benchmarks: Sequence[Benchmark], vendor: Vendor, out: Path,
                reporter: TransferReporter | None = None) -> dict[str, Any]:
    """Save the images of a selection into one bundle file (written atomically: complete, or not at all).

    Args:
        engine: the engine holding the built images.
        benchmarks: the selection (benchmarks excluded from the vendor are left out).
        vendor: the vendor.
        out: the bundle file to write (replaced if present).
        reporter: hears the save's progress (its total is an estimate from the images' sizes).

    Returns:
        The bundle's manifest (also in its ``bundle.json``).

    Raises:
        ShipError: an image is not built, or the folder of ``out`` lacks the space (checked before writing).
        EngineError: the engine failed while saving.
    """
    reporter = reporter or QuietTransfer()
    images, supported = images_for(benchmarks, vendor)
    described = _describe(engine, images, vendor)
    estimate = _estimate(described)
    out = Path(out)
    if not out.parent.is_dir():
        raise ShipError(f"-o {out}: folder {out.parent} does not exist")
    free = shutil.disk_usage(out.parent).free
    if free < estimate * 1.05 + 64 * 2**20:
        raise ShipError(f"-o {out}: the bundle needs about {estimate / 1e9:.1f} GB but {out.parent} has "
                        f"{free / 1e9:.1f} GB free")
    manifest = {
        "format": BUNDLE_FORMAT, "kind": BUNDLE_KIND, **host_facts(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "vendor": vendor.name,
        "benchmarks": [b.name for b in supported], "images": described,
        "run": f"milabox run --vendor {vendor.name} {' '.join(b.name for b in supported)}",
    }
    what = f"saving {len(images)} images"
    reporter.transfer_started(what, estimate, exact=False)
    with ArchiveWriter(out) as writer:
        writer.add_bytes(README_PART, _readme(manifest, out.name, vendor).encode())
        writer.add_bytes(MANIFEST_PART, (json.dumps(manifest, indent=2) + "\n").encode())
        part = writer.add_stream(IMAGES_PART, engine.save_images([i.tag for i in images]), reporter, what)
    reporter.transfer_ended(what, part.size)
    return manifest


def _manifest(path: Path, parts: dict[str, Part]) -> dict[str, Any]:
    for name in (MANIFEST_PART, IMAGES_PART):
        if name not in parts:
            raise ShipError(f"{path}: has no {name} part; not a milabox bundle")
    try:
        manifest = json.loads(read_small_part(path, parts[MANIFEST_PART]))
    except ValueError as e:
        raise ShipError(f"{path}: {MANIFEST_PART} is not valid JSON ({e})") from None
    manifest = check_manifest(path, MANIFEST_PART, manifest, BUNDLE_KIND, BUNDLE_FORMAT, "bundle")
    images = manifest.get("images")
    if not isinstance(images, list) or not images or not all(
            isinstance(i, dict) and isinstance(i.get("tag"), str) and str(i.get("id", "")).startswith("sha256:")
            for i in images):
        raise ShipError(f"{path}: {MANIFEST_PART} field 'images' must be a list of {{tag, id: sha256:...}}")
    return manifest


def verify_bundle(path: Path, reporter: TransferReporter | None = None) -> tuple[dict[str, Any], dict[str, Part]]:
    """Check every byte of a bundle and read its manifest, without touching any engine.

    Returns:
        (manifest, parts).

    Raises:
        ShipError: the bundle is missing, truncated, damaged or tampered with, or not a milabox bundle.
    """
    parts = scan(Path(path), reporter, f"checking {Path(path).name}")
    return _manifest(Path(path), parts), parts


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_bundle` did.

    Attributes:
        manifest: the bundle's manifest.
        loaded: whether images were loaded (False: every image was already present with the same id).
        seconds: wall time, checks included.
    """

    manifest: dict[str, Any]
    loaded: bool
    seconds: float


def load_bundle(engine: Engine, path: Path, reporter: TransferReporter | None = None) -> LoadResult:
    """Check a bundle completely, then load its images and check they are the ones its manifest names.

    Nothing reaches the engine unless every part matches its checksum. Images already present with the
    manifest's ids are not loaded again.

    Args:
        engine: the engine to load into.
        path: the bundle file.
        reporter: hears the check's and the load's progress.

    Returns:
        What was done.

    Raises:
        ShipError: the bundle is refused (see :func:`verify_bundle`; nothing is loaded), or a loaded tag has
            another id than the manifest says.
        EngineError: the engine refused the images.
    """
    t0 = time.monotonic()
    path = Path(path)
    manifest, parts = verify_bundle(path, reporter)
    images = manifest["images"]
    if all((info := engine.image(i["tag"])) is not None and info.id == i["id"] for i in images):
        return LoadResult(manifest, False, time.monotonic() - t0)
    what, unpack = f"loading {len(images)} images", "the engine unpacks the layers"

    def stream():
        yield from read_part(path, parts[IMAGES_PART], reporter, what)
        reporter.transfer_started(unpack, None)  # all sent; the engine works on for a while, silently

    engine.load_images(stream())
    reporter.transfer_ended(unpack, 0)
    for image in images:
        info = engine.image(image["tag"])
        if info is None or info.id != image["id"]:
            got = info.id if info else "nothing"
            raise ShipError(f"{path}: after loading, {image['tag']} is {got} but {MANIFEST_PART} says {image['id']}")
    return LoadResult(manifest, True, time.monotonic() - t0)


def version_note(manifest: dict[str, Any]) -> str | None:
    """A warning when a bundle was made by another milabox version (``run`` looks for this version's tags)."""
    made_by = manifest.get("milabox_version")
    if made_by and made_by != __version__:
        return (f"this bundle was made by milabox {made_by} and this is {__version__}: `milabox run` looks for "
                f"images tagged -{__version__}; install milabox {made_by} to run it")
    return None
