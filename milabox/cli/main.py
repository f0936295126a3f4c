"""The command line: a thin layer over the library. The only place that turns errors into messages and exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import warnings
from pathlib import Path

import click
from tabulate import tabulate

from milabox import __version__
from milabox.cli.common import EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, exit_for_run
from milabox.cli.options import benchmarks_dir_option, env_option, format_option, selection_options, vendor_option
from milabox.errors import MilaboxError
from milabox.execution import interrupts


def _vendor(name: str):
    from milabox.definitions.vendors import get_vendor
    return get_vendor(name)


def _benchmarks(names: tuple[str, ...], suite: str | None = None, exclude: tuple[str, ...] = ()):
    from milabox.definitions.benchmarks import all_benchmarks, select
    return select(list(names), all_benchmarks(), suite, list(exclude))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="milabox")
@benchmarks_dir_option
def cli(benchmarks_dirs: tuple[Path, ...] = ()) -> None:
    """milabox: benchmark AI accelerators, one container per benchmark."""
    if benchmarks_dirs:
        from milabox.definitions.benchmarks import add_benchmark_dirs
        add_benchmark_dirs(list(benchmarks_dirs))


@cli.command("list")
@format_option("table", "markdown", "json")
def list_cmd(fmt: str) -> None:
    """List benchmarks with their description, tags, weight and vendors."""
    from milabox.definitions.benchmarks import all_benchmarks
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
@vendor_option
@click.option("--runtime", is_flag=True, help="print the vendor's runtime image Dockerfile instead")
@click.option("--base-image", help="render FROM this base instead of the vendor's")
def render(benchmark: str, vendor: str, runtime: bool, base_image: str | None) -> None:
    """Print the Dockerfile milabox builds for BENCHMARK (a benchmark or group name)."""
    from milabox.definitions.benchmarks import group_members
    from milabox.images.render import render_benchmark, render_runtime
    from milabox.images.sources import discover, torch_wheels
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
    v = _vendor(vendor)
    selected = _benchmarks(benchmarks, suite, exclude)
    sources = discover(index_url, wheelhouse, ca_bundle, build_network)
    results = build_images(Engine(), selected, v, sources, BuildDisplay(verbose), log_dir or _default_log_dir(),
                           base_image, no_cache, on_skip=lambda b, why: note(f"skipping {b.name} on {v.name}: {why}"))
    total = sum(r.seconds for r in results)
    note(f"built {len(results)} image(s) for {v.name} in {total:.1f}s")


@cli.command()
@click.argument("benchmarks", nargs=-1)
@vendor_option
@click.option("--size", type=click.Choice(["smoke", "full"]), default="smoke", show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True, help="attempts per benchmark")
@click.option("--until-sem", "until_sem", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PCT",
              help="stop repeating a benchmark once its sem% is below PCT (at least 2, at most --repeat attempts)")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="seconds per container (default: each benchmark's own)")
@click.option("--devices", help="device ids, e.g. 0,1 (default: all devices, one container)")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="new folder for the results (default runs/<time>-<vendor>-<size>)")
@env_option()
@click.option("--memory", default="", help="memory limit per container, e.g. 64g (default: none)")
@click.option("--nodes", default=None, help="multi-node run: every node's host, node rank 0 (rendezvous) first")
@click.option("--node-rank", type=click.IntRange(0), default=None, help="with --nodes: this node's index in the list")
@click.option("--master-port", type=click.IntRange(1, 65535), default=None, help="with --nodes: rendezvous port "
              "(default 29500)")
@format_option(help_text="format of the report printed at the end")
@click.option("--telemetry-interval", "telemetry_interval", type=click.FloatRange(min=0), default=1.0,
              show_default=True, metavar="S", help="seconds between power/utilization samples (0: no telemetry)")
@selection_options
def run(benchmarks: tuple[str, ...], vendor: str, size: str, repeat: int, timeout: float | None,
        devices: str | None, run_dir: Path | None, env: dict[str, str], memory: str, fmt: str, suite: str | None = None,
        exclude: tuple[str, ...] = (), until_sem: float | None = None, nodes: str | None = None,
        node_rank: int | None = None, master_port: int | None = None, telemetry_interval: float = 1.0) -> None:
    """Run BENCHMARKS (names, groups or tags; default: all) in containers and print the report."""
    from milabox.cli.display import RunDisplay, note
    from milabox.engine.docker import Engine
    from milabox.execution.local import RunOptions
    from milabox.execution.local import run as run_benchmarks
    from milabox.reporting.formats import format_report
    from milabox.reporting.summary import summarize
    from milabox.rundir.read import load_run
    v = _vendor(vendor)
    selected = _benchmarks(benchmarks, suite, exclude)
    from milabox.execution.multinode import command_line
    spec, selected = command_line(nodes, node_rank, master_port, selected,
                                  lambda b, why: note(f"skipping {b.name}: {why}"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    device_ids = tuple(d.strip() for d in devices.split(",") if d.strip()) if devices else None
    options = RunOptions(size=size, repeat=repeat, until_sem_pct=until_sem, timeout_s=timeout, devices=device_ids,
                         run_dir=run_dir or Path("runs") / f"{stamp}-{v.name}-{size}",
                         environment=env, memory=memory, command=("milabox", *sys.argv[1:]),
                         nodes=spec, telemetry_interval_s=telemetry_interval)
    with warnings.catch_warnings():  # e.g. a missing telemetry library: one line, once per run
        warnings.showwarning = lambda message, *args, **kwargs: note(f"milabox: warning: {message}")
        folder = run_benchmarks(Engine(), selected, v, options, RunDisplay())
    note(f"results in {folder}")
    if spec is not None and spec.is_worker:  # only global rank 0 measures: its node's report holds the rate
        note(f"node rank {spec.node_rank} of {spec.nnodes}: the rate is in node rank 0's ({spec.master}) run folder")
    else:
        click.echo(format_report(summarize(load_run(folder)), fmt))
    exit_for_run(folder)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option()
@click.option("--baseline", "baseline_dirs", multiple=True, type=click.Path(path_type=Path), metavar="RUN",
              help="score every benchmark as a ratio to this run folder (repeatable: pooled)")
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="also write a self-contained HTML report with plots")
@click.option("--provenance", is_flag=True, help="show each run's provenance (host, devices, images, packages, "
              "command, how to reproduce each container) instead of the results")
def report(run_dirs: tuple[Path, ...], fmt: str, baseline_dirs: tuple[Path, ...] = (),
           html_file: Path | None = None, provenance: bool = False) -> None:
    """Summarise one or more run folders (pooled) as a table, markdown, csv or json."""
    if provenance:
        from milabox.reporting.provenance import format_provenance, load_provenance
        records = [load_provenance(d) for d in run_dirs]
        click.echo(json.dumps(records[0] if len(records) == 1 else records, indent=2) if fmt == "json" else
                   "\n\n".join(format_provenance(r, str(d)) for r, d in zip(records, run_dirs, strict=True)))
        return
    from milabox.reporting.formats import format_report
    from milabox.reporting.summary import summarize
    from milabox.rundir.read import SKIPPED_BY_REPORTS, load_run
    runs = [load_run(d, SKIPPED_BY_REPORTS) for d in run_dirs]
    baseline = summarize([load_run(d, SKIPPED_BY_REPORTS) for d in baseline_dirs]) if baseline_dirs else None
    summary = summarize(runs, baseline)
    click.echo(format_report(summary, fmt))
    if html_file is not None:
        from milabox.cli.display import note
        from milabox.reporting.html import write_html
        write_html(html_file, runs, summary)
        note(f"HTML report in {html_file}")


@cli.command()
@vendor_option
@click.option("--index-url", help="Python package index (default: pip's configured one, else PyPI)")
@click.option("--wheelhouse", help="folder of local wheels, e.g. the torch wheel (default: pip's find-links)")
@click.option("--ca-bundle", help="CA bundle for TLS-intercepting proxies (default: pip's cert setting)")
def lock(vendor: str, index_url: str | None, wheelhouse: str | None, ca_bundle: str | None) -> None:
    """Resolve the vendor's joint lock of every benchmark's Python dependencies (exact versions, hashes)."""
    from milabox.cli.display import note
    from milabox.definitions.benchmarks import all_benchmarks
    from milabox.images.lock import generate_lock
    from milabox.images.sources import discover
    generate_lock(_vendor(vendor), list(all_benchmarks().values()), discover(index_url, wheelhouse, ca_bundle),
                  on_line=note)


@cli.command()
@vendor_option
@click.option("--force", is_flag=True, help="make it again even if present")
def base(vendor: str, force: bool) -> None:
    """Make the vendor's base image locally (debootstrap + import), for machines with no registry."""
    from milabox.cli.display import note
    from milabox.engine.docker import Engine
    from milabox.images.base import make_local_base
    make_local_base(Engine(), _vendor(vendor), on_line=note, force=force)


@cli.command()
@click.option("--vendor", "vendors", multiple=True, help="check only these vendors (default: all)")
def doctor(vendors: tuple[str, ...]) -> None:
    """Check the engine, base and runtime images, devices and telemetry backends."""
    from milabox.execution.doctor import checks
    rows = checks(list(vendors))
    click.echo(tabulate([[r.what, "ok" if r.ok else "MISSING", r.detail] for r in rows],
                        headers=["check", "status", "detail"]))


# Commands of each area live in milabox/cli/<area>.py; each area adds its one line here.
def _add_area_commands() -> None:
    from milabox.cli import compare
    cli.add_command(compare.cmd)
    from milabox.cli import ship
    for command in ship.COMMANDS:
        cli.add_command(command)
    from milabox.cli import cluster
    cli.add_command(cluster.cmd)


_add_area_commands()


def main() -> None:
    """Entry point: run the CLI; errors become one line on stderr and an exit code (milabox.cli.common.EXIT_*)."""
    interrupts.ensure_ctrl_c()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("milabox: aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except MilaboxError as e:
        click.echo(f"milabox: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("milabox: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("MILABOX_DEBUG"):
            raise
        click.echo(f"milabox: internal error: {type(e).__name__}: {e} (set MILABOX_DEBUG=1 for the traceback)",
                   err=True)
        sys.exit(EXIT_INTERNAL)
