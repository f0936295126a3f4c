"""``milabox compare RUN_A RUN_B [...]``: benchmark by benchmark against the first run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from milabox.cli.common import EXIT_REGRESSION
from milabox.cli.options import format_option
from milabox.stats import THRESHOLD_RULE


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option()
@click.option("--threshold", type=click.FloatRange(0, 100, max_open=True), default=None, metavar="PCT",
              help=f"a significant slowdown beyond PCT % is a regression  [default: {THRESHOLD_RULE} per benchmark, "
                   "CV of the first run's attempt rates]")
@click.option("--fail-on-regression", is_flag=True,
              help=f"exit with code {EXIT_REGRESSION} when any benchmark regressed (for CI)")
def cmd(run_dirs: tuple[Path, ...], fmt: str, threshold: float | None, fail_on_regression: bool) -> None:
    """Compare run folders with the first one: ratios, significance, regressions and setup differences.

    Tests use attempt rates only (run with --repeat 2 or more; 5 to detect a 10 % change at 3 % noise).
    """
    from milabox.errors import ConfigError
    from milabox.reporting.compare import compare, format_comparison
    from milabox.rundir.read import SKIPPED_BY_REPORTS, load_run
    if len(run_dirs) < 2:
        raise ConfigError("compare needs at least two run folders, e.g. milabox compare runs/a runs/b")
    runs = [load_run(d, SKIPPED_BY_REPORTS) for d in run_dirs]
    comparison = compare(runs, threshold=None if threshold is None else threshold / 100)
    click.echo(format_comparison(comparison, fmt), nl=False)
    if fail_on_regression and comparison.regressions:
        sys.exit(EXIT_REGRESSION)
