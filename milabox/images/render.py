"""Rendering Dockerfiles from the Jinja templates in ``templates/``. Python decides what goes in; templates say how."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import jinja2

from milabox import __version__
from milabox.definitions.benchmarks import FRAMEWORKS, Benchmark
from milabox.definitions.vendors import Vendor
from milabox.errors import ConfigError
from milabox.images.naming import runtime_tag
from milabox.images.sources import PackageSources
from milabox.resources import package_path
from milabox_runtime.cli import CATALOG_ENV, CATALOG_NAME, RESULTS_MOUNT

TEMPLATES_DIR = package_path("images", "templates")
# What installs the lock inside the runtime image's build stage: uv (the default: same lock, same hashes, same
# freeze, a fraction of pip's time) or pip (kept to measure against: `make build-speed`).
INSTALLERS = ("uv", "pip")

def jinja_environment(folder: Path) -> jinja2.Environment:
    """The one Jinja configuration of every milabox template (Dockerfiles, job scripts): an undefined name is an
    error, never an empty string; blocks leave no blank lines.

    Args:
        folder: the templates' folder.
    """
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)


def _env() -> jinja2.Environment:
    return jinja_environment(TEMPLATES_DIR)


def dockerfile_hash(text: str) -> str:
    """Short content hash of a rendered Dockerfile (an image label; tells which rendering built an image)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _render(template: str, **context: object) -> str:
    try:
        return _env().get_template(template).render(version=__version__, **context)
    except jinja2.UndefinedError as e:
        raise ConfigError(f"images/{template}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"images/{template}: {e}") from None


def render_runtime(vendor: Vendor, base_image: str | None = None, sources: PackageSources | None = None,
                   torch_wheels: Sequence[str] = (), installer: str = INSTALLERS[0],
                   framework: str = FRAMEWORKS[0]) -> str:
    """Render a vendor's runtime Dockerfile for a framework (one template: only the lock, the version checked and
    where torch comes from differ).

    Args:
        vendor: the vendor.
        base_image: image to start FROM (default: the vendor's ``base_image``).
        sources: package index, CA bundle (default: PyPI, no CA bundle).
        torch_wheels: torch wheel file names copied into the build from a wheelhouse; none means the
            vendor's torch index is used. Ignored where the base image ships torch (``torch_source = "image"``).
        installer: what installs the lock in the build stage, one of :data:`INSTALLERS` (default ``uv``).
        framework: ``torch`` (default: the lock ``<vendor>.txt``) or ``jax`` (``<vendor>-jax.txt``, from the package
            index alone: torch wheels, torch index and a base image's torch play no part).

    Returns:
        The Dockerfile text.

    Raises:
        ConfigError: the installer is not one of :data:`INSTALLERS`, or the template refers to something not given.
    """
    from milabox.images.lock import lock_path  # lock imports naming, which this module's callers import first

    if installer not in INSTALLERS:
        raise ConfigError(f"installer {installer!r}: not one of {', '.join(INSTALLERS)}")
    torch = framework == FRAMEWORKS[0]
    from_image = torch and vendor.torch_from_image
    wheels = list(torch_wheels) if torch and not from_image else []
    return _render("runtime.Dockerfile.j2", vendor=vendor, base_image=base_image or vendor.base_image,
                   sources=sources or PackageSources(), torch_wheels=wheels, installer=installer,
                   framework=framework, framework_version=vendor.framework_version(framework), from_image=from_image,
                   extra_index=vendor.torch_index if torch and not from_image and not wheels else "",
                   lock_name=lock_path(vendor, framework).name,
                   kind="runtime" if torch else f"{framework.upper()} runtime",
                   rows="benchmark" if torch else f"{framework.upper()} benchmark")


def render_benchmark(benchmarks: Sequence[Benchmark], vendor: Vendor) -> str:
    """Render the Dockerfile of one benchmark group (all its variants share the image).

    Args:
        benchmarks: the group's benchmarks (at least one).
        vendor: the vendor.

    Returns:
        The Dockerfile text.

    Raises:
        ConfigError: the template refers to something not given.
    """
    first = benchmarks[0]
    return _render("benchmark.Dockerfile.j2", vendor=vendor, runtime_image=runtime_tag(vendor, first.framework),
                   group=first.group,
                   names=[b.name for b in benchmarks], description=first.group_description,
                   catalog=CATALOG_NAME, catalog_env=CATALOG_ENV, results_mount=RESULTS_MOUNT)
