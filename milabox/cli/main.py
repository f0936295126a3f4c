"""The command line: a thin layer over the library. The only place that turns errors into messages and exit codes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from tabulate import tabulate

from milabox import __version__
from milabox.cli.common import EXIT_ENGINE_LOST, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED
from milabox.cli.options import benchmarks_dir_option, format_option
from milabox.errors import MilaboxError
from milabox.execution import interrupts


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
@click.option("--vendor", "vendors", multiple=True, help="check only these vendors (default: all)")
def doctor(vendors: tuple[str, ...]) -> None:
    """Check the engine, base and runtime images, devices and telemetry backends."""
    from milabox.execution.doctor import checks
    rows = checks(list(vendors))
    click.echo(tabulate([[r.what, "ok" if r.ok else "MISSING", r.detail] for r in rows],
                        headers=["check", "status", "detail"]))


# Commands of each area live in milabox/cli/<area>.py; each area adds its one line here.
def _add_area_commands() -> None:
    from milabox.cli import images
    for command in images.COMMANDS:
        cli.add_command(command)
    from milabox.cli import run
    cli.add_command(run.cmd)
    from milabox.cli import report
    cli.add_command(report.cmd)
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
        from milabox.errors import EngineLost
        click.echo(f"milabox: error: {e}", err=True)
        # An engine that went away mid-command is a temporary failure (a run says how to --resume), not a fix to make.
        sys.exit(EXIT_ENGINE_LOST if isinstance(e, EngineLost) else EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("milabox: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("MILABOX_DEBUG"):
            raise
        click.echo(f"milabox: internal error: {type(e).__name__}: {e} (set MILABOX_DEBUG=1 for the traceback)",
                   err=True)
        sys.exit(EXIT_INTERNAL)
