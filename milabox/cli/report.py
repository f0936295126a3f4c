"""``milabox report``: summarise run folders (or show their provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from milabox.cli.options import format_option


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option()
@click.option("--baseline", "baseline_dirs", multiple=True, type=click.Path(path_type=Path), metavar="RUN",
              help="score every benchmark as a ratio to this run folder (repeatable: pooled, same setup only)")
@click.option("--pool", is_flag=True, help="pool the run folders into one report (default: off, several folders "
              "are shown side by side); refused when their setups differ (vendor, host, size, images, overrides)")
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="also write a self-contained HTML report with plots")
@click.option("--provenance", is_flag=True, help="show each run's provenance (host, devices, images, packages, "
              "command, how to reproduce each container) instead of the results")
def cmd(run_dirs: tuple[Path, ...], fmt: str, baseline_dirs: tuple[Path, ...] = (), pool: bool = False,
           html_file: Path | None = None, provenance: bool = False) -> None:
    """Summarise run folders as a table, markdown, csv or json: one folder, several side by side, or --pool."""
    if provenance:
        from milabox.reporting.provenance import format_provenance, load_provenance
        records = [load_provenance(d) for d in run_dirs]
        click.echo(json.dumps(records[0] if len(records) == 1 else records, indent=2) if fmt == "json" else
                   "\n\n".join(format_provenance(r, str(d)) for r, d in zip(records, run_dirs, strict=True)))
        return
    from milabox.reporting.formats import format_report
    from milabox.reporting.side_by_side import check_poolable, format_side_by_side, setup_difference
    from milabox.reporting.summary import summarize
    from milabox.rundir.read import SKIPPED_BY_REPORTS, load_run
    runs = [load_run(d, SKIPPED_BY_REPORTS) for d in run_dirs]
    baseline_runs = [load_run(d, SKIPPED_BY_REPORTS) for d in baseline_dirs]
    check_poolable(baseline_runs)
    baseline = summarize(baseline_runs) if baseline_runs else None
    if pool or len(runs) == 1:
        check_poolable(runs)
        summary = summarize(runs, baseline)
        click.echo(format_report(summary, fmt), nl=False)
    else:
        summaries = [summarize(run, baseline) for run in runs]
        diff = setup_difference(runs)
        note = None if diff is None else f"'{diff[0]}' ({diff[1].setup[diff[0]]!r} in {diff[1].path}, " \
                                         f"{diff[2].setup[diff[0]]!r} in {diff[2].path})"
        click.echo(format_side_by_side(summaries, fmt, note), nl=False)
        summary = summaries
    if html_file is not None:
        from milabox.cli.display import note
        from milabox.reporting.html import write_html
        write_html(html_file, runs, summary)
        note(f"HTML report in {html_file}")
