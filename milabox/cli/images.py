"""``milabox render | build | lock | base``: the images of a vendor and its benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import click

from milabox.cli.common import selected, vendor_named
from milabox.cli.options import selection_options, vendor_option
from milabox.definitions.benchmarks import FRAMEWORKS


@click.command()
@click.argument("benchmark")
@vendor_option
@click.option("--runtime", is_flag=True, help="print the Dockerfile of the vendor's runtime image BENCHMARK builds FROM "
              "(its framework's) instead")
@click.option("--base-image", help="render FROM this base instead of the vendor's")
def render(benchmark: str, vendor: str, runtime: bool, base_image: str | None) -> None:
    """Print the Dockerfile milabox builds for BENCHMARK (a benchmark or group name)."""
    from milabox.definitions.benchmarks import group_members
    from milabox.images.render import render_benchmark, render_runtime
    from milabox.images.sources import discover, torch_wheels
    v = vendor_named(vendor)
    benches = selected((benchmark,))
    if runtime:
        sources = discover()
        click.echo(render_runtime(v, base_image, sources, [w.name for w in torch_wheels(sources, v)],
                                  framework=benches[0].framework), nl=False)
    else:
        click.echo(render_benchmark(group_members(benches[0].group), v), nl=False)


def _default_log_dir() -> Path:
    return Path(os.environ.get("MILABOX_HOME", ".milabox")) / "build-logs"


@click.command()
@click.argument("benchmarks", nargs=-1)
@vendor_option
@click.option("--base-image", help="build FROM this base image instead of the vendor's")
@click.option("--index-url", help="Python package index for builds (default: pip's configured one, else PyPI)")
@click.option("--wheelhouse", help="folder of local wheels, e.g. a torch wheel (default: pip's find-links)")
@click.option("--ca-bundle", help="CA bundle trusted by pip in builds (default: pip's cert setting)")
@click.option("--build-network", default="host", show_default=True, help="network mode of build steps")
@click.option("--no-cache", is_flag=True, help="rebuild every layer")
@click.option("--log-dir", type=click.Path(path_type=Path), default=None, help="build logs (default .milabox/build-logs)")
@click.option("-v", "--verbose", is_flag=True, help="show the build output, not only the steps")
@selection_options
def build(benchmarks: tuple[str, ...], vendor: str, base_image: str | None, index_url: str | None,
          wheelhouse: str | None, ca_bundle: str | None, build_network: str, no_cache: bool, log_dir: Path | None,
          verbose: bool, suite: str | None, exclude: tuple[str, ...]) -> None:
    """Build the vendor's runtime image and the images of BENCHMARKS (default: all)."""
    from milabox.cli.display import BuildDisplay, note
    from milabox.engine.docker import Engine
    from milabox.images.build import build as build_images
    from milabox.images.sources import discover
    v = vendor_named(vendor)
    chosen = selected(benchmarks, suite, exclude)
    sources = discover(index_url, wheelhouse, ca_bundle, build_network)
    results = build_images(Engine(), chosen, v, sources, BuildDisplay(verbose), log_dir or _default_log_dir(),
                           base_image, no_cache, on_skip=lambda b, why: note(f"skipping {b.name} on {v.name}: {why}"))
    total = sum(r.seconds for r in results)
    note(f"built {len(results)} image(s) for {v.name} in {total:.1f}s")


@click.command()
@vendor_option
@click.option("--index-url", help="Python package index (default: pip's configured one, else PyPI)")
@click.option("--wheelhouse", help="folder of local wheels, e.g. the torch wheel (default: pip's find-links)")
@click.option("--ca-bundle", help="CA bundle for TLS-intercepting proxies (default: pip's cert setting)")
@click.option("--framework", type=click.Choice(FRAMEWORKS), default=FRAMEWORKS[0], show_default=True,
              help="which lock: torch (<vendor>.txt) or jax (<vendor>-jax.txt, the JAX rows')")
def lock(vendor: str, index_url: str | None, wheelhouse: str | None, ca_bundle: str | None, framework: str) -> None:
    """Resolve the vendor's joint lock of every benchmark's Python dependencies (exact versions, hashes)."""
    from milabox.cli.display import note
    from milabox.definitions.benchmarks import all_benchmarks
    from milabox.images.lock import generate_lock
    from milabox.images.sources import discover
    generate_lock(vendor_named(vendor), list(all_benchmarks().values()), discover(index_url, wheelhouse, ca_bundle),
                  on_line=note, framework=framework)


@click.command()
@vendor_option
@click.option("--force", is_flag=True, help="make it again even if present")
def base(vendor: str, force: bool) -> None:
    """Make the vendor's base image locally (debootstrap + import), for machines with no registry."""
    from milabox.cli.display import note
    from milabox.engine.docker import Engine
    from milabox.images.base import make_local_base
    make_local_base(Engine(), vendor_named(vendor), on_line=note, force=force)



COMMANDS = [render, build, lock, base]
