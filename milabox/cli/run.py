"""``milabox run``: run benchmarks on this host's engine into a new run folder, then print the report."""

from __future__ import annotations

import datetime as dt
import json
import sys
import warnings
from pathlib import Path

import click

from milabox.cli.common import exit_for_run, selected, vendor_named
from milabox.cli.options import env_option, format_option, selection_options, vendor_option
from milabox.execution.plan import RUNTIMES


@click.command("run")
@click.argument("benchmarks", nargs=-1)
@vendor_option
@click.option("--size", type=click.Choice(["smoke", "full"]), default="smoke", show_default=True)
@click.option("--repeat", default="1", show_default=True, metavar="N|auto",
              help="attempts per benchmark; auto: 3, then as many as their run-to-run CV asks (5 %: 3, 5-25 %: 5; "
                   "from 25 %: a warning that the figure cannot be trusted)")
@click.option("--until-stable", "until_stable", is_flag=True, default=False,
              help="repeat a benchmark whose attempt had a transient slow phase, until one has none (at most --repeat)")
@click.option("--min-seconds", "min_seconds", type=click.FloatRange(min=0), default=None, metavar="S",
              help="measure until both the steps and S seconds are done (default: the size's own; max_seconds caps)")
@click.option("--set", "settings", multiple=True, metavar="[ROW.]KEY=VALUE",
              help="change a size parameter (batch_size, steps, n...) of every selected row, or of ROW (repeatable)")
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
@click.option("--runtime", type=click.Choice(RUNTIMES), default="docker", show_default=True,
              help="docker: one container per attempt; native: one process per attempt in this Python environment "
                   "(its torch; no engine needed, no --memory or --nodes)")
@click.option("--resume", "resume", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              metavar="RUN_DIR", help="finish RUN_DIR with its recorded command: run only its missing, failed or "
                                      "interrupted attempts (refused when its images or milabox version changed)")
@click.option("--resuming", is_flag=True, hidden=True, default=False)
@selection_options
def cmd(benchmarks: tuple[str, ...], vendor: str, size: str, repeat: str, timeout: float | None,
        devices: str | None, run_dir: Path | None, env: dict[str, str], memory: str, fmt: str, suite: str | None = None,
        exclude: tuple[str, ...] = (), until_sem: float | None = None, nodes: str | None = None,
        node_rank: int | None = None, master_port: int | None = None, telemetry_interval: float = 1.0,
        runtime: str = "docker", until_stable: bool = False, min_seconds: float | None = None,
        settings: tuple[str, ...] = (), resume: Path | None = None, resuming: bool = False) -> None:
    """Run BENCHMARKS (names, groups or tags; default: all) in containers and print the report."""
    if resume is not None:  # the run's own command again, into its folder
        context = click.get_current_context()
        with cmd.make_context("run", [*_recorded_arguments(resume), "--run-dir", str(resume)],
                              parent=context.parent) as sub:
            return context.invoke(cmd, **{**sub.params, "resuming": True})
    from milabox.cli.display import RunDisplay, note
    from milabox.engine.docker import Engine
    from milabox.execution.local import run as run_benchmarks
    from milabox.execution.plan import RunOptions
    from milabox.reporting.formats import format_report
    from milabox.reporting.summary import summarize
    from milabox.rundir.read import load_run
    v = vendor_named(vendor)
    chosen = selected(benchmarks, suite, exclude)
    from milabox.execution.multinode import command_line
    spec, chosen = command_line(nodes, node_rank, master_port, chosen,
                                  lambda b, why: note(f"skipping {b.name}: {why}"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    device_ids = tuple(d.strip() for d in devices.split(",") if d.strip()) if devices else None
    auto = repeat.strip().lower() == "auto"
    if not auto and not (repeat.strip().isdigit() and int(repeat) >= 1):
        raise click.BadParameter(f"{repeat!r} is not a number of attempts >= 1 or 'auto'", param_hint="--repeat")
    from milabox.definitions.benchmarks import parse_overrides
    overrides = parse_overrides(settings, chosen, size)
    options = RunOptions(size=size, repeat=1 if auto else int(repeat), auto_repeat=auto, until_stable=until_stable,
                         min_seconds=min_seconds, overrides=overrides, until_sem_pct=until_sem, timeout_s=timeout,
                         devices=device_ids,
                         run_dir=run_dir or Path("runs") / f"{stamp}-{v.name}-{size}",
                         environment=env, memory=memory, command=("milabox", *sys.argv[1:]),
                         nodes=spec, telemetry_interval_s=telemetry_interval, runtime=runtime, resume=resuming)
    engine = Engine() if runtime == "docker" else None
    if engine is not None:
        from milabox.execution.leftovers import remove_dead_runs
        if removed := remove_dead_runs(engine):
            note(f"milabox: removed {removed} leftover container(s) of dead milabox runs")
    with warnings.catch_warnings():  # e.g. a missing telemetry library: one line, once per run
        warnings.showwarning = lambda message, *args, **kwargs: note(f"milabox: warning: {message}")
        folder = run_benchmarks(engine, chosen, v, options, RunDisplay())
    note(f"results in {folder}")
    _say_if_engine_lost(folder, note)
    if spec is not None and spec.is_worker:  # only global rank 0 measures: its node's report holds the rate
        note(f"node rank {spec.node_rank} of {spec.nnodes}: the rate is in node rank 0's ({spec.master}) run folder")
    else:
        click.echo(format_report(summarize(load_run(folder)), fmt))
    exit_for_run(folder)


def _recorded_arguments(run_dir: Path) -> list[str]:
    """The arguments of the ``milabox run`` that made ``run_dir`` (its manifest's command), less ``--run-dir``."""
    from milabox.errors import ResultsError
    from milabox.rundir.layout import MANIFEST_NAME
    try:
        command = list(json.loads((run_dir / MANIFEST_NAME).read_text()).get("command") or [])
    except (OSError, ValueError, AttributeError) as e:
        raise ResultsError(f"--resume: {run_dir / MANIFEST_NAME}: no readable manifest ({type(e).__name__}); "
                           "resume a folder that milabox run made") from None
    if "run" not in command:
        raise ResultsError(f"--resume: {run_dir / MANIFEST_NAME}: its command {command!r} is not a milabox run")
    before, after = command[:command.index("run")], command[command.index("run") + 1:]
    dirs = [before[n + 1] for n, a in enumerate(before[:-1]) if a == "--benchmarks-dir"]
    if dirs:  # the group option the run was given, applied again
        from milabox.definitions.benchmarks import add_benchmark_dirs
        add_benchmark_dirs([Path(d) for d in dirs])
    out, skip = [], False
    for arg in after:
        if skip or arg.startswith(("--run-dir=", "--resume=")):
            skip = False
            continue
        if arg in ("--run-dir", "--resume"):
            skip = True
            continue
        out.append(arg)
    return out


def _say_if_engine_lost(folder: Path, note) -> None:
    """The one line an engine loss gets: the engine, what was running, where the results are, how to go on."""
    from milabox.rundir.layout import MANIFEST_NAME, RECORD_NAME
    if json.loads((folder / MANIFEST_NAME).read_text()).get("status") != "engine-lost":
        return
    lost = [json.loads(p.read_text()) for p in sorted(folder.glob(f"*/*/{RECORD_NAME}"))]
    lost = [r for r in lost if isinstance(r, dict) and r.get("engine_lost")]
    running = ", ".join(f"{r.get('benchmark')} repeat {r.get('repeat')} on device {r.get('device')}" for r in lost)
    cause = lost[0].get("cause", "engine lost") if lost else "engine lost"
    note(f"milabox: {cause} while {running or 'the run'} ran; the results so far are kept in {folder}; once the "
         f"engine is back, go on with `milabox run --resume {folder}`")
