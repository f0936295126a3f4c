"""Joint per-vendor lock files: every benchmark's Python dependencies, resolved together, exact and hashed.

One lock a vendor (``milabox/vendors/locks/<vendor>.txt``), resolved by uv for the vendor image's Python and
platform, from an input file (``<vendor>.in``: the vendor's exact torch plus every benchmark's requirements)
that sits beside it. A vendor whose base image ships torch (``torch_source = "image"``) gets a lock without torch
and without what only torch needs: the benchmarks' requirements are first resolved with ``torch==<torch_version>``
(so every package that depends on torch accepts the image's version), then locked with torch excluded and those
versions as constraints. The runtime image installs the lock with ``--require-hashes``, so every benchmark of
a vendor shares one set of versions, and vendors cannot drift apart silently: the lock records a hash of
its inputs and a build refuses a lock whose inputs changed.

A vendor's JAX rows (``framework = "jax"``) get a lock of their own, ``<vendor>-jax.txt`` (inputs ``<vendor>-jax.in``):
the vendor's JAX pin (``[jax] requirement``, e.g. ``jax[cuda13]==0.9.2``) plus the JAX benchmarks' requirements,
resolved from the package index alone (no torch index, no wheelhouse); ``milabox lock --framework jax`` makes it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from milabox.definitions.benchmarks import FRAMEWORKS, Benchmark
from milabox.definitions.vendors import Vendor, vendors_dir
from milabox.errors import ConfigError, MilaboxError
from milabox.images.naming import runnable
from milabox.images.sources import PackageSources, torch_wheels

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_INPUTS_LINE = "# inputs-sha256: "


def locks_dir() -> Path:
    """Folder of lock files: ``locks/`` beside the vendor data files."""
    return vendors_dir() / "locks"


def lock_stem(vendor: Vendor, framework: str = FRAMEWORKS[0]) -> str:
    """Name of a vendor's lock files without suffix: ``cpu`` (torch), ``cpu-jax``."""
    return vendor.name if framework == FRAMEWORKS[0] else f"{vendor.name}-{framework}"


def lock_path(vendor: Vendor, framework: str = FRAMEWORKS[0]) -> Path:
    """The vendor's lock file for a framework."""
    return locks_dir() / f"{lock_stem(vendor, framework)}.txt"


def _lock_command(vendor: Vendor, framework: str) -> str:
    return f"milabox lock --vendor {vendor.name}" + ("" if framework == FRAMEWORKS[0] else f" --framework {framework}")


def _from_image(vendor: Vendor, framework: str) -> bool:
    return framework == FRAMEWORKS[0] and vendor.torch_from_image


def lock_inputs(vendor: Vendor, benchmarks: Sequence[Benchmark], framework: str = FRAMEWORKS[0]) -> list[str]:
    """What the vendor's lock for a framework resolves: its exact torch (unless the base image ships it) or its JAX
    pin, then each requirement of the benchmarks of that framework it runs.

    Raises:
        ConfigError: a requirement is not an exact pin (``name==version``), two benchmarks pin one
            package at different versions (the message names both), or the vendor offers no such framework.
    """
    why = vendor.framework_excluded(framework)
    if why:
        raise ConfigError(f"vendor {vendor.name} has no {framework} runtime ({vendor.path.name or vendor.name} [jax]): "
                          f"{why}")
    pins: dict[str, tuple[str, str]] = {}
    for bench in runnable(benchmarks, vendor):
        if bench.framework != framework:
            continue
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
    if framework != FRAMEWORKS[0]:
        return [vendor.jax.requirement, *requirements]
    return requirements if vendor.torch_from_image else [_torch_pin(vendor), *requirements]


def _torch_pin(vendor: Vendor) -> str:
    return f"torch=={vendor.torch_version}"


def _hashed_inputs(vendor: Vendor, inputs: Sequence[str], framework: str = FRAMEWORKS[0]) -> list[str]:
    # The image's torch version is an input too: the lock's torch-dependent versions were checked against it.
    if _from_image(vendor, framework):
        return [*inputs, f"# {_torch_pin(vendor)} from the base image"]
    return list(inputs)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def inputs_hash(inputs: Sequence[str]) -> str:
    """Hash of a lock's inputs, recorded in the lock to tell when it is out of date."""
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]


def read_pins(path: Path) -> dict[str, str]:
    """Package name (normalised) -> exact version of a lock file."""
    return {_normal(m[1]): m[2] for line in path.read_text().splitlines() if (m := _PIN.match(line))}


def check_lock(vendor: Vendor, benchmarks: Sequence[Benchmark], framework: str = FRAMEWORKS[0]) -> Path:
    """The vendor's lock for a framework, if it exists and was made from the current inputs.

    Returns:
        The lock file.

    Raises:
        ConfigError: no lock, or the benchmarks' requirements or the framework's version changed since it was made.
    """
    path = lock_path(vendor, framework)
    if not path.exists():
        raise ConfigError(f"no lock for vendor {vendor.name} ({path}); make it with `{_lock_command(vendor, framework)}`"
                          " where the vendor's package index can be reached")
    recorded = next((line[len(_INPUTS_LINE):].strip() for line in path.read_text().splitlines()
                     if line.startswith(_INPUTS_LINE)), "")
    if recorded != inputs_hash(_hashed_inputs(vendor, lock_inputs(vendor, benchmarks, framework), framework)):
        raise ConfigError(f"{path} is out of date: the benchmarks' requirements or the {framework} version changed; "
                          f"run `{_lock_command(vendor, framework)}`")
    return path


def generate_lock(vendor: Vendor, benchmarks: Sequence[Benchmark], sources: PackageSources,
                  on_line=lambda text: None, framework: str = FRAMEWORKS[0]) -> Path:
    """Resolve the vendor's lock for a framework with uv and write ``<vendor>.in`` and ``<vendor>.txt`` (torch) or
    ``<vendor>-jax.in`` and ``<vendor>-jax.txt``.

    Args:
        vendor: the vendor; its ``python_version`` and ``python_platform`` are the image's.
        benchmarks: all benchmarks (those the vendor runs contribute requirements).
        sources: package index and CA bundle; a wheelhouse holding the vendor's torch wheel is used for it.
        on_line: progress messages.
        framework: ``torch`` (default) or ``jax``.

    Returns:
        The lock file.

    Raises:
        ConfigError: requirements are not exact or disagree, or the vendor offers no such framework.
        MilaboxError: uv is missing or could not resolve (its last error line is shown).
    """
    inputs = lock_inputs(vendor, benchmarks, framework)
    hashed = _hashed_inputs(vendor, inputs, framework)
    stem, command = lock_stem(vendor, framework), _lock_command(vendor, framework)
    folder = locks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{stem}.in"
    source.write_text(f"# Inputs of {stem}.txt, written by `{command}`.\n"
                      + "".join(f"{line}\n" for line in hashed))
    on_line(f"resolving {len(inputs)} {framework} requirements for {vendor.name} (Python {vendor.python_version}, "
            f"{vendor.python_platform}) with uv")
    if framework != FRAMEWORKS[0]:
        text = _compile(vendor, sources, folder, source.name, [], torch=False)
    elif not vendor.torch_from_image:
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
    path = lock_path(vendor, framework)
    rows = "every benchmark" if framework == FRAMEWORKS[0] else f"every {framework} benchmark"
    header = (f"# milabox lock for vendor {vendor.name}: exact, hashed, resolved jointly for {rows}.\n"
              f"# Regenerate with `{command}`; inputs are in {source.name}.\n"
              f"{_INPUTS_LINE}{inputs_hash(hashed)}\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + text)
    os.replace(tmp, path)
    on_line(f"wrote {path} ({len(read_pins(path))} packages)")
    return path


def _compile(vendor: Vendor, sources: PackageSources, folder: Path, source: str, extra: list[str],
             torch: bool = True) -> str:
    """Run ``uv pip compile`` on ``source`` (in ``folder``) for the vendor's image; its output, the hashed pins.
    ``torch``: also look in the vendor's torch wheelhouse or index (not for a JAX lock)."""
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
    if not torch:
        pass
    elif torch_wheels(sources, vendor):
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
