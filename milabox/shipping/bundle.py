"""Bundles for vendors and air-gapped sites: the images of a selection, saved (not rebuilt), in one checked archive.

A bundle (see docs/bundles.md) is a :mod:`milabox.shipping.archive` file with these parts::

    README.txt     what it holds and the commands to run on the target (the first installs milabox offline)
    bundle.json    manifest: vendor, benchmarks, each image's tag, id, digests and size, milabox version, commit,
                   the wheels it carries
    milabox-<version>-py3-none-any.whl   the milabox that made it (built from its checkout, or the wheel it was
                   installed from)
    *.whl          milabox's own dependencies, where this host's pip could download them (its Python and platform)
    images.tar     one ``docker save`` of the runtime image and every benchmark group's image (shared layers once)
    SHA256SUMS     the SHA-256 of every other part

``load`` checks every byte before the engine sees any, then streams ``images.tar`` into it and checks that each
loaded tag has the id the manifest names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
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
from milabox.resources import INSTALL_ROOT, package_path, runtime_package
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_said(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or [f"exit code {proc.returncode}"])[-1]


def _milabox_wheel(work: Path) -> tuple[Path | None, str | None]:
    """The wheel of the running milabox, and None; or None and why there is none (one line)."""
    if (INSTALL_ROOT / "pyproject.toml").is_file():
        # Built from a copy: setuptools builds in the source tree, and a checkout's build/ could hold stale modules.
        source = work / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            if (INSTALL_ROOT / name).is_file():
                shutil.copy2(INSTALL_ROOT / name, source / name)
        for package in (package_path(), runtime_package()):
            shutil.copytree(package, source / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                               "-w", str(work / "wheel"), str(source)], check=False, capture_output=True, text=True)
        wheels = sorted((work / "wheel").glob("milabox-*.whl"))
        if proc.returncode == 0 and wheels:
            return wheels[0], None
        return None, f"no milabox wheel in the bundle: `pip wheel` of {INSTALL_ROOT} failed ({_pip_said(proc)})"
    try:
        direct = json.loads(importlib.metadata.distribution("milabox").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        direct = {}
    url = str(direct.get("url", ""))
    installed_from = Path(url.removeprefix("file://")) if url.startswith("file://") else None
    if installed_from is not None and installed_from.suffix == ".whl" and installed_from.is_file():
        return installed_from, None
    return None, (f"no milabox wheel in the bundle: milabox {__version__} in {INSTALL_ROOT} was not installed from a "
                  "checkout or a wheel file pip recorded; install the same version on the target")


def _requirements() -> list[str]:
    """milabox's own dependencies, as its installed metadata names them (extras left out)."""
    try:
        requires = importlib.metadata.requires("milabox") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [r.split(";")[0].strip() for r in requires if "extra ==" not in r]


def _dependency_wheels(wheel: Path, work: Path) -> tuple[list[Path], str | None]:
    """The wheels of milabox's dependencies this host's pip downloads for its own Python and platform."""
    into = work / "dependencies"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "-d",
                           str(into), str(wheel)], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        return [], f"milabox's dependencies are not in the bundle: `pip download` failed ({_pip_said(proc)})"
    return sorted(p for p in into.glob("*.whl") if p.name != wheel.name), None


def _wheels(work: Path, dependencies: bool) -> tuple[list[Path], dict[str, Any]]:
    """The wheel files to carry (milabox's first) and what the manifest says of them."""
    wheel, note = _milabox_wheel(work)
    deps, deps_note = ([], None)
    if wheel is not None and dependencies:
        deps, deps_note = _dependency_wheels(wheel, work)
    elif wheel is not None:
        deps_note = "milabox's dependencies are not in the bundle (--no-dependencies)"
    files = ([wheel] if wheel else []) + deps
    info = {
        "wheel": {"name": wheel.name, "sha256": _sha256(wheel), "size": wheel.stat().st_size} if wheel else None,
        "dependencies": [{"name": p.name, "sha256": _sha256(p)} for p in deps],
        "dependencies_for": f"CPython {sys.version_info[0]}.{sys.version_info[1]} on {sys.platform} "
                            f"{platform.machine()}" if deps else None,
        "requires": _requirements(),
        "wheel_notes": [n for n in (note, deps_note) if n],
    }
    return files, info


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


def _install_lines(manifest: dict[str, Any], file_name: str) -> list[str]:
    wheel = manifest["wheel"]
    if wheel is None:
        return [f"No milabox wheel is in this bundle: install milabox {manifest['milabox_version']} on the target.",
                ""]
    lines = ["On the target machine, first install milabox from the bundle, offline (in a venv if you like):", "",
             f"    tar -xf {file_name} --wildcards '*.whl' && pip install --no-index --find-links . {wheel['name']}",
             ""]
    if manifest["dependencies"]:
        lines += [f"Its dependencies' wheels are here too, for {manifest['dependencies_for']} (the bundling host's);",
                  "on another Python or platform, install them first: " + " ".join(manifest["requires"]), ""]
    else:
        lines += ["Its dependencies are not in this bundle: install them first (or drop --no-index where an index",
                  "answers): pip install " + " ".join(f"'{r}'" for r in manifest["requires"]), ""]
    return lines


def _readme(manifest: dict[str, Any], file_name: str, target: Vendor) -> str:
    benches = " ".join(manifest["benchmarks"])
    vendor = manifest["vendor"]
    lines = [
        f"milabox bundle: {benches} for vendor {vendor}",
        (f"made {manifest['created']} on {manifest['host']} by milabox {manifest['milabox_version']} "
         f"(commit {manifest['source_commit']})"),
        "",
        *_install_lines(manifest, file_name),
        "Then, with a Docker engine running:",
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
                reporter: TransferReporter | None = None, dependencies: bool = True) -> dict[str, Any]:
    """Save the images of a selection and the milabox wheel into one bundle file (written atomically).

    Args:
        engine: the engine holding the built images.
        benchmarks: the selection (benchmarks excluded from the vendor are left out).
        vendor: the vendor.
        out: the bundle file to write (replaced if present).
        reporter: hears the save's progress (its total is an estimate from the images' sizes).
        dependencies: also carry the wheels of milabox's dependencies that this host's pip downloads.

    Returns:
        The bundle's manifest (also in its ``bundle.json``); its ``wheel_notes`` say, one line each, what
        could not be carried (no milabox wheel, no dependencies).

    Raises:
        ShipError: an image is not built, or the folder of ``out`` lacks the space (checked before writing).
        EngineError: the engine failed while saving.
    """
    reporter = reporter or QuietTransfer()
    images, supported = images_for(benchmarks, vendor)
    described = _describe(engine, images, vendor)
    out = Path(out)
    if not out.parent.is_dir():
        raise ShipError(f"-o {out}: folder {out.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix="milabox-wheels-") as work:
        wheels, wheel_info = _wheels(Path(work), dependencies)
        return _write(engine, images, described, supported, vendor, out, reporter, wheels, wheel_info)


def _write(engine: Engine, images: Sequence[NamedImage], described: list[dict[str, Any]],
           supported: Sequence[Benchmark], vendor: Vendor, out: Path, reporter: TransferReporter,
           wheels: Sequence[Path], wheel_info: dict[str, Any]) -> dict[str, Any]:
    estimate = _estimate(described) + sum(w.stat().st_size for w in wheels)
    free = shutil.disk_usage(out.parent).free
    if free < estimate * 1.05 + 64 * 2**20:
        raise ShipError(f"-o {out}: the bundle needs about {estimate / 1e9:.1f} GB but {out.parent} has "
                        f"{free / 1e9:.1f} GB free")
    manifest = {
        "format": BUNDLE_FORMAT, "kind": BUNDLE_KIND, **host_facts(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "vendor": vendor.name,
        "benchmarks": [b.name for b in supported], "images": described,
        "run": f"milabox run --vendor {vendor.name} {' '.join(b.name for b in supported)}", **wheel_info,
    }
    what = f"saving {len(images)} images"
    reporter.transfer_started(what, estimate, exact=False)
    with ArchiveWriter(out) as writer:
        writer.add_bytes(README_PART, _readme(manifest, out.name, vendor).encode())
        writer.add_bytes(MANIFEST_PART, (json.dumps(manifest, indent=2) + "\n").encode())
        for wheel in wheels:
            writer.add_file(wheel.name, wheel)
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
    for wheel in _listed_wheels(path, manifest):
        part = parts.get(str(wheel.get("name")))
        if part is None or part.sha256 != wheel.get("sha256"):
            raise ShipError(f"{path}: wheel {wheel.get('name')!r} listed in {MANIFEST_PART} is "
                            f"{'not in the bundle' if part is None else 'another file than the one listed'}; refused")
    return manifest


def _listed_wheels(path: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The wheels a manifest lists (milabox's, then its dependencies'); none in bundles made before wheels."""
    wheel, deps = manifest.get("wheel"), manifest.get("dependencies", [])
    listed = ([wheel] if wheel is not None else []) + (deps if isinstance(deps, list) else [None])
    if not all(isinstance(w, dict) for w in listed):
        raise ShipError(f"{path}: {MANIFEST_PART} fields 'wheel' and 'dependencies' must be {{name, sha256}} "
                        "objects (or null / a list of them)")
    return listed


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
        wheel = manifest.get("wheel")
        inside = f" (its wheel {wheel['name']} is in the bundle: see README.txt)" if isinstance(wheel, dict) else ""
        return (f"this bundle was made by milabox {made_by} and this is {__version__}: `milabox run` looks for "
                f"images tagged -{__version__}; install milabox {made_by} to run it{inside}")
    return None
