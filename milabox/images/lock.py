"""Joint per-vendor lock files: every benchmark's Python dependencies, resolved together, exact and hashed.

One lock a vendor (``milabox/vendors/locks/<vendor>.txt``), resolved by uv for the vendor image's Python and
platform, from an input file (``<vendor>.in``: the vendor's exact torch plus every benchmark's requirements)
that sits beside it. A vendor whose base image ships torch (``torch_source = "image"``) gets a lock without torch
and without what only torch needs: the benchmarks' requirements are first resolved with ``torch==<torch_version>``
(so every package that depends on torch accepts the image's version), then locked with torch excluded and those
versions as constraints. The runtime image installs the lock with ``--require-hashes``, so every benchmark of
a vendor shares one set of versions, and vendors cannot drift apart silently: the lock records a hash of
its inputs and a build refuses a lock whose inputs changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor, vendors_dir
from milabox.errors import ConfigError, MilaboxError
from milabox.images.naming import runnable
from milabox.images.sources import PackageSources, torch_wheels

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_INPUTS_LINE = "# inputs-sha256: "


def locks_dir() -> Path:
    """Folder of lock files: ``locks/`` beside the vendor data files."""
    return vendors_dir() / "locks"


def lock_path(vendor: Vendor) -> Path:
    """The vendor's lock file."""
    return locks_dir() / f"{vendor.name}.txt"


def lock_inputs(vendor: Vendor, benchmarks: Sequence[Benchmark]) -> list[str]:
    """What the vendor's lock resolves: its exact torch (unless the base image ships it), then each requirement of
    the benchmarks it runs.

    Raises:
        ConfigError: a requirement is not an exact pin (``name==version``), or two benchmarks pin one
            package at different versions (the message names both).
    """
    pins: dict[str, tuple[str, str]] = {}
    for bench in runnable(benchmarks, vendor):
        for req in bench.requirements:
            m = _PIN.match(req.strip())
            if not m:
                raise ConfigError(f"{bench.folder / 'benchmark.toml'}: requirement {req!r} is not an exact pin; "
                                  "write name==version (the vendor lock resolves the rest)")
            name = _normal(m[1])
            if name in pins and pins[name][0] != req.strip():
                raise ConfigError(f"{bench.folder / 'benchmark.toml'}: requirement {req!r} disagrees with "
                                  f"{pins[name][0]!r} of benchmark {pins[name][1]}; one version per vendor")
            pins[name] = (req.strip(), bench.name)
    requirements = sorted(p for p, _ in pins.values())
    return requirements if vendor.torch_from_image else [_torch_pin(vendor), *requirements]


def _torch_pin(vendor: Vendor) -> str:
    return f"torch=={vendor.torch_version}"


def _hashed_inputs(vendor: Vendor, inputs: Sequence[str]) -> list[str]:
    # The image's torch version is an input too: the lock's torch-dependent versions were checked against it.
    return [*inputs, f"# {_torch_pin(vendor)} from the base image"] if vendor.torch_from_image else list(inputs)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def inputs_hash(inputs: Sequence[str]) -> str:
    """Hash of a lock's inputs, recorded in the lock to tell when it is out of date."""
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]


def read_pins(path: Path) -> dict[str, str]:
    """Package name (normalised) -> exact version of a lock file."""
    return {_normal(m[1]): m[2] for line in path.read_text().splitlines() if (m := _PIN.match(line))}


def check_lock(vendor: Vendor, benchmarks: Sequence[Benchmark]) -> Path:
    """The vendor's lock, if it exists and was made from the current inputs.

    Returns:
        The lock file.

    Raises:
        ConfigError: no lock, or the benchmarks' requirements or the torch version changed since it was made.
    """
    path = lock_path(vendor)
    if not path.exists():
        raise ConfigError(f"no lock for vendor {vendor.name} ({path}); make it with `milabox lock --vendor "
                          f"{vendor.name}` where the vendor's package index can be reached")
    recorded = next((line[len(_INPUTS_LINE):].strip() for line in path.read_text().splitlines()
                     if line.startswith(_INPUTS_LINE)), "")
    if recorded != inputs_hash(_hashed_inputs(vendor, lock_inputs(vendor, benchmarks))):
        raise ConfigError(f"{path} is out of date: the benchmarks' requirements or the torch version changed; "
                          f"run `milabox lock --vendor {vendor.name}`")
    return path


def generate_lock(vendor: Vendor, benchmarks: Sequence[Benchmark], sources: PackageSources,
                  on_line=lambda text: None) -> Path:
    """Resolve the vendor's lock with uv and write ``<vendor>.in`` and ``<vendor>.txt``.

    Args:
        vendor: the vendor; its ``python_version`` and ``python_platform`` are the image's.
        benchmarks: all benchmarks (those the vendor runs contribute requirements).
        sources: package index and CA bundle; a wheelhouse holding the vendor's torch wheel is used for it.
        on_line: progress messages.

    Returns:
        The lock file.

    Raises:
        ConfigError: requirements are not exact or disagree.
        MilaboxError: uv is missing or could not resolve (its last error line is shown).
    """
    inputs = lock_inputs(vendor, benchmarks)
    hashed = _hashed_inputs(vendor, inputs)
    folder = locks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{vendor.name}.in"
    source.write_text(f"# Inputs of {vendor.name}.txt, written by `milabox lock --vendor {vendor.name}`.\n"
                      + "".join(f"{line}\n" for line in hashed))
    on_line(f"resolving {len(inputs)} requirements for {vendor.name} (Python {vendor.python_version}, "
            f"{vendor.python_platform}) with uv")
    if not vendor.torch_from_image:
        text = _compile(vendor, sources, folder, source.name, [])
    else:
        # Torch's metadata is the same version on every index (a local label such as +rocm7.1 aside), so the
        # package index answers for the image's torch in the first pass; its files are never locked.
        scratch = {name: folder / f".{vendor.name}.{name}" for name in ("check.in", "constraints.txt", "excludes.txt")}
        try:
            scratch["check.in"].write_text("".join(f"{line}\n" for line in [_torch_pin(vendor), *inputs]))
            checked = _compile(vendor, sources, folder, scratch["check.in"].name, [])
            scratch["check.in"].write_text(checked)
            scratch["constraints.txt"].write_text("".join(f"{n}=={v}\n" for n, v in
                                                          read_pins(scratch["check.in"]).items() if n != "torch"))
            scratch["excludes.txt"].write_text("torch\n")
            text = _compile(vendor, sources, folder, source.name,
                            ["--constraints", scratch["constraints.txt"].name, "--excludes", scratch["excludes.txt"].name])
        finally:
            for leftover in scratch.values():
                leftover.unlink(missing_ok=True)
    path = lock_path(vendor)
    header = (f"# milabox lock for vendor {vendor.name}: exact, hashed, resolved jointly for every benchmark.\n"
              f"# Regenerate with `milabox lock --vendor {vendor.name}`; inputs are in {source.name}.\n"
              f"{_INPUTS_LINE}{inputs_hash(hashed)}\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + text)
    os.replace(tmp, path)
    on_line(f"wrote {path} ({len(read_pins(path))} packages)")
    return path


def _compile(vendor: Vendor, sources: PackageSources, folder: Path, source: str, extra: list[str]) -> str:
    """Run ``uv pip compile`` on ``source`` (in ``folder``) for the vendor's image; its output, the hashed pins."""
    uv = Path(sys.executable).parent / "uv"
    command = [str(uv) if uv.exists() else "uv", "pip", "compile", source, "--generate-hashes", "--no-header",
               "--python-version", vendor.python_version, "--python-platform", vendor.python_platform,
               "--index-url", sources.index_url, "--quiet",
               # uv's default (first-index) lets an extra index that carries a package (the torch index has
               # numpy, jinja2, pillow...) shadow PyPI's newer releases; best-match picks the newest version
               # across indexes, and --generate-hashes still pins every file (uv docs: pip/compatibility, "Packages that
               # exist on multiple indexes").
               "--index-strategy", "unsafe-best-match", *extra]
    command += [arg for url in sources.extra_index_urls for arg in ("--extra-index-url", url)]
    if torch_wheels(sources, vendor):
        command += ["--find-links", str(sources.wheelhouse)]
    elif vendor.torch_index and not vendor.torch_from_image:
        command += ["--extra-index-url", vendor.torch_index]
    env = {**os.environ, **({"SSL_CERT_FILE": str(sources.ca_bundle)} if sources.ca_bundle else {})}
    try:
        proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, timeout=900, check=False)
    except FileNotFoundError:
        raise MilaboxError("uv is not installed; `pip install uv` (milabox's own dependencies include it)") from None
    except subprocess.TimeoutExpired:
        raise MilaboxError(f"uv did not resolve the {vendor.name} lock within 15 minutes") from None
    if proc.returncode != 0:
        last = [line for line in proc.stderr.splitlines() if line.strip()][-3:]
        raise MilaboxError(f"uv could not resolve the {vendor.name} lock: {' / '.join(last)}")
    return proc.stdout
