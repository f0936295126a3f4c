"""The command line: a thin layer over the library. The only place that turns errors into messages and exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import click
from tabulate import tabulate

from . import __version__
from .errors import MilaboxError

VENDOR_HELP = "platform (cpu, cuda, rocm, xpu) or maker (nvidia, amd, intel)"


def _vendor(name: str):
    from .vendors import get_vendor
    return get_vendor(name)


def _benchmarks(names: tuple[str, ...]):
    from .benchmarks import all_benchmarks, select
    return select(list(names), all_benchmarks())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="milabox")
def cli() -> None:
    """milabox: benchmark AI accelerators, one container per benchmark."""


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
def list_cmd(fmt: str) -> None:
    """List benchmarks with their description, tags, weight and vendors."""
    from .benchmarks import all_benchmarks
    rows = [{"name": b.name, "description": b.description, "family": b.family, "tags": list(b.tags),
             "plan": b.plan, "unit": b.unit, "weight": b.weight, "precision": b.precision,
             "excluded_vendors": b.excluded_vendors} for b in all_benchmarks().values()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = [[r["name"], r["description"], ", ".join(r["tags"]), r["unit"], f"{r['weight']:g}",
              ", ".join(sorted(r["excluded_vendors"])) or "-"] for r in rows]
    click.echo(tabulate(table, headers=["benchmark", "description", "tags", "unit", "weight", "not on"],
                        tablefmt="github" if fmt == "markdown" else "simple"))


@cli.command()
@click.argument("benchmark")
@click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)
@click.option("--runtime", is_flag=True, help="print the vendor's runtime image Dockerfile instead")
@click.option("--base-image", help="render FROM this base instead of the vendor's")
def render(benchmark: str, vendor: str, runtime: bool, base_image: str | None) -> None:
    """Print the Dockerfile milabox builds for BENCHMARK (a benchmark or group name)."""
    from .benchmarks import group_members
    from .build import torch_wheels
    from .netconfig import discover
    from .render import render_benchmark, render_runtime
    v = _vendor(vendor)
    benches = _benchmarks((benchmark,))
    if runtime:
        sources = discover()
        click.echo(render_runtime(v, base_image, sources, [w.name for w in torch_wheels(sources, v)]), nl=False)
    else:
        click.echo(render_benchmark(group_members(benches[0].group), v), nl=False)


def _default_log_dir() -> Path:
    return Path(os.environ.get("MILABOX_HOME", ".milabox")) / "build-logs"


@cli.command()
@click.argument("benchmarks", nargs=-1)
@click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)
@click.option("--base-image", help="build FROM this base image instead of the vendor's")
@click.option("--index-url", help="Python package index for builds (default: pip's configured one, else PyPI)")
@click.option("--wheelhouse", help="folder of local wheels, e.g. a torch wheel (default: pip's find-links)")
@click.option("--ca-bundle", help="CA bundle trusted by pip in builds (default: pip's cert setting)")
@click.option("--build-network", default="host", show_default=True, help="network mode of build steps")
@click.option("--no-cache", is_flag=True, help="rebuild every layer")
@click.option("--log-dir", type=click.Path(path_type=Path), default=None, help="build logs (default .milabox/build-logs)")
@click.option("-v", "--verbose", is_flag=True, help="show the build output, not only the steps")
def build(benchmarks: tuple[str, ...], vendor: str, base_image: str | None, index_url: str | None,
          wheelhouse: str | None, ca_bundle: str | None, build_network: str, no_cache: bool, log_dir: Path | None,
          verbose: bool) -> None:
    """Build the vendor's runtime image and the images of BENCHMARKS (default: all)."""
    from .build import build as build_images
    from .console import BuildDisplay, note
    from .engine import Engine
    from .netconfig import discover
    v = _vendor(vendor)
    selected = _benchmarks(benchmarks)
    sources = discover(index_url, wheelhouse, ca_bundle, build_network)
    results = build_images(Engine(), selected, v, sources, BuildDisplay(verbose), log_dir or _default_log_dir(),
                           base_image, no_cache, on_skip=lambda b, why: note(f"skipping {b.name} on {v.name}: {why}"))
    total = sum(r.seconds for r in results)
    note(f"built {len(results)} image(s) for {v.name} in {total:.1f}s")


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@cli.command()
@click.argument("benchmarks", nargs=-1)
@click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)
@click.option("--size", type=click.Choice(["smoke", "full"]), default="smoke", show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True, help="attempts per benchmark")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="seconds per container (default: each benchmark's own)")
@click.option("--devices", help="device ids, e.g. 0,1 (default: all devices, one container)")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="new folder for the results (default runs/<time>-<vendor>-<size>)")
@click.option("--env", "env", multiple=True, help="KEY=VALUE set in every container (repeatable)")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]), default="table",
              show_default=True, help="format of the report printed at the end")
def run(benchmarks: tuple[str, ...], vendor: str, size: str, repeat: int, timeout: float | None,
        devices: str | None, run_dir: Path | None, env: tuple[str, ...], fmt: str) -> None:
    """Run BENCHMARKS (names, groups or tags; default: all) in containers and print the report."""
    from .console import RunDisplay, note
    from .engine import Engine
    from .report import format_report, summarize
    from .results import load_run
    from .run import RunOptions
    from .run import run as run_benchmarks
    v = _vendor(vendor)
    selected = _benchmarks(benchmarks)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    device_ids = tuple(d.strip() for d in devices.split(",") if d.strip()) if devices else None
    options = RunOptions(size=size, repeat=repeat, timeout_s=timeout, devices=device_ids,
                         run_dir=run_dir or Path("runs") / f"{stamp}-{v.name}-{size}",
                         environment=_parse_env(env), command=("milabox", *sys.argv[1:]))
    folder = run_benchmarks(Engine(), selected, v, options, RunDisplay())
    note(f"results in {folder}")
    click.echo(format_report(summarize(load_run(folder)), fmt))
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("status") == "interrupted":
        sys.exit(130)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "json"]), default="table",
              show_default=True)
def report(run_dirs: tuple[Path, ...], fmt: str) -> None:
    """Summarise one or more run folders (pooled) as a table, markdown, csv or json."""
    from .report import format_report, summarize
    from .results import load_run
    click.echo(format_report(summarize([load_run(d) for d in run_dirs]), fmt))


@cli.command()
@click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)
@click.option("--force", is_flag=True, help="make it again even if present")
def base(vendor: str, force: bool) -> None:
    """Make the vendor's base image locally (debootstrap + import), for machines with no registry."""
    from .baseimage import make_local_base
    from .console import note
    from .engine import Engine
    make_local_base(Engine(), _vendor(vendor), on_line=note, force=force)


@cli.command()
@click.option("--vendor", "vendors", multiple=True, help="check only these vendors (default: all)")
def doctor(vendors: tuple[str, ...]) -> None:
    """Check the engine, base and runtime images, devices and telemetry backends."""
    from .doctor import checks
    rows = checks(list(vendors))
    click.echo(tabulate([[r.what, "ok" if r.ok else "MISSING", r.detail] for r in rows],
                        headers=["check", "status", "detail"]))


# Commands of each area live in milabox/commands/<area>.py; each area adds its one line here.
def _add_area_commands() -> None:
    pass


_add_area_commands()


def main() -> None:
    """Entry point: run the CLI; a MilaboxError becomes one line on stderr and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("milabox: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except MilaboxError as e:
        click.echo(f"milabox: error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("milabox: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("MILABOX_DEBUG"):
            raise
        click.echo(f"milabox: internal error: {type(e).__name__}: {e} (set MILABOX_DEBUG=1 for the traceback)",
                   err=True)
        sys.exit(70)
