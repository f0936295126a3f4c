"""``milabox slurm ...``: submit benchmarks as Slurm jobs, follow them, gather their results into one run folder."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click

from milabox.cli.common import EXIT_FAILED, exit_for_run, parse_env
from milabox.cli.options import FORMATS, VENDOR_HELP


def _note(text: str) -> None:
    click.echo(text, err=True)


def _elapsed(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


class SlurmDisplay:
    """One line per submission and per state change; every minute, how many jobs are in which state."""

    def submitted(self, benchmark: str, job_id: str, script: Path) -> None:
        _note(f"[slurm] {benchmark}: submitted as job {job_id} ({script})")

    def changed(self, benchmark: str, job_id: str, state, elapsed_s: float) -> None:
        detail = f", exit code {state.exit_code}" if state.terminal and state.exit_code is not None else ""
        reason = f" ({state.reason})" if state.reason and not state.terminal else ""
        _note(f"[slurm] {benchmark}: job {job_id} {state.state}{reason}{detail} ({_elapsed(elapsed_s)} elapsed)")

    def cancelling(self, job_ids) -> None:
        _note(f"[slurm] interrupted: cancelling job(s) {', '.join(job_ids)} and waiting for them to end "
              "(Ctrl-C again to stop waiting)")

    def waiting(self, counts: dict[str, int], elapsed_s: float) -> None:
        summary = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
        _note(f"[slurm] waiting: {summary} ({_elapsed(elapsed_s)} elapsed)")


def _report(folder: Path, fmt: str) -> None:
    from milabox.reporting.formats import format_report
    from milabox.reporting.summary import summarize
    from milabox.rundir.read import load_run
    click.echo(format_report(summarize(load_run(folder)), fmt))
    exit_for_run(folder)


@click.group("slurm")
def cmd() -> None:
    """Run benchmarks as Slurm jobs (docker, apptainer or pyxis), results gathered into one run folder."""


@cmd.command("submit")
@click.argument("benchmarks", nargs=-1)
@click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)
@click.option("--runtime", type=click.Choice(["docker", "apptainer", "pyxis"]), default="docker", show_default=True,
              help="how jobs start containers: the nodes' Docker engine, Apptainer, or pyxis/enroot")
@click.option("--partition", default="", help="Slurm partition (default: the cluster's default)")
@click.option("--nodes", type=click.IntRange(1), default=1, show_default=True,
              help="nodes of a benchmark that spans nodes (plan all_devices); the others get one")
@click.option("--gpus-per-node", type=click.IntRange(0), default=0, show_default=True,
              help="GPUs asked per node (0 for the cpu vendor)")
@click.option("--size", type=click.Choice(["smoke", "full"]), default="smoke", show_default=True)
@click.option("--time", "time_limit", default="", metavar="HH:MM:SS",
              help="time limit of each job (default: the benchmark's timeout per attempt + 15 min)")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="new folder on a filesystem every node sees (default runs/<time>-<vendor>-<size>-slurm)")
@click.option("--registry", default="", metavar="HOST[:PORT]/PREFIX",
              help="run the images pushed there (default: each node's Docker engine holds them)")
@click.option("--exclusive/--shared", default=True, show_default=True,
              help="whole nodes (no other job disturbs the measurement), or share them with other jobs")
@click.option("--sbatch-option", "sbatch_options", multiple=True, metavar="--OPT=VALUE",
              help="extra #SBATCH line, e.g. --account=proj (repeatable)")
@click.option("--env", "env", multiple=True, help="KEY=VALUE set in every container (repeatable)")
@click.option("--poll-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="seconds between two looks at the queue")
@click.option("--dry-run", is_flag=True, help="print the scripts; write and submit nothing")
@click.option("--no-wait", is_flag=True, help="submit and return; gather later with `milabox slurm collect`")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="format of the report printed at the end")
@click.option("--suite", type=click.Choice(["standard", "all"]), help="standard: the weighted set; all: every one")
@click.option("--exclude", multiple=True, help="leave out a benchmark, group, family or tag (repeatable)")
def submit(benchmarks: tuple[str, ...], vendor: str, runtime: str, partition: str, nodes: int, gpus_per_node: int,
           size: str, time_limit: str, run_dir: Path | None, registry: str, exclusive: bool,
           sbatch_options: tuple[str, ...], env: tuple[str, ...], poll_interval: float, dry_run: bool, no_wait: bool,
           fmt: str, suite: str | None, exclude: tuple[str, ...]) -> None:
    """Submit one Slurm job per benchmark, follow them, and gather every result into one run folder."""
    from milabox.cluster.client import Slurm
    from milabox.cluster.jobs import collect as collect_jobs
    from milabox.cluster.jobs import submit as submit_jobs
    from milabox.cluster.options import SlurmOptions
    from milabox.cluster.scripts import SLURM_DIR, job_scripts
    from milabox.definitions.benchmarks import all_benchmarks, select
    from milabox.definitions.vendors import get_vendor
    from milabox.engine.docker import Engine
    from milabox.errors import EngineError
    v = get_vendor(vendor)
    selected = select(list(benchmarks), all_benchmarks(), suite, list(exclude))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    options = SlurmOptions(
        run_dir=run_dir or Path("runs") / f"{stamp}-{v.name}-{size}-slurm", runtime=runtime, partition=partition,
        nodes=nodes, gpus_per_node=gpus_per_node, time_limit=time_limit, size=size, environment=parse_env(env),
        registry=registry, exclusive=exclusive, sbatch_options=sbatch_options, poll_s=poll_interval,
        command=("milabox", *sys.argv[1:]))
    scripts = job_scripts(selected, v, options, on_skip=lambda b, why: _note(f"skipping {b.name}: {why}"))
    if dry_run:
        folder = options.run_dir.resolve() / SLURM_DIR
        for script in scripts:
            click.echo(f"# ==> {folder / script.name} <==")
            click.echo(script.text)
        _note(f"dry run: {len(scripts)} script(s), nothing written or submitted")
        return
    try:
        engine = Engine()
    except EngineError:
        engine = None  # a login node without an engine: image ids are recorded by the jobs themselves
    display = SlurmDisplay()
    client = Slurm()
    folder = submit_jobs(scripts, v, options, client, engine, display)
    if no_wait:
        _note(f"submitted; gather the results with `milabox slurm collect {folder}`")
        return
    collect_jobs(folder, client, poll_interval, display)
    _note(f"results in {folder}")
    _report(folder, fmt)


@cmd.command("collect")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--poll-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="seconds between two looks at the queue")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def collect(run_dir: Path, poll_interval: float, fmt: str) -> None:
    """Follow the jobs of RUN_DIR (from `slurm submit --no-wait`) to their end, gather results, print the report."""
    from milabox.cluster.client import Slurm
    from milabox.cluster.jobs import collect as collect_jobs
    folder = collect_jobs(run_dir, Slurm(), poll_interval, SlurmDisplay())
    _report(folder, fmt)


@cmd.command("run-job")
@click.argument("benchmark")
@click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)
@click.option("--size", type=click.Choice(["smoke", "full"]), default="smoke", show_default=True)
@click.option("--run-dir", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="the shared run folder made by `milabox slurm submit`")
@click.option("--env", "env", multiple=True, help="KEY=VALUE set in the container (repeatable)")
def run_job(benchmark: str, vendor: str, size: str, run_dir: Path, env: tuple[str, ...]) -> None:
    """Inside a docker-runtime job: run BENCHMARK on this node into the shared run folder (one srun task a node)."""
    from milabox.cluster.job import run_job as run_slurm_job
    from milabox.definitions.benchmarks import all_benchmarks, select
    from milabox.definitions.vendors import get_vendor
    from milabox.engine.docker import Engine
    from milabox.errors import RunError
    v = get_vendor(vendor)
    benches = select([benchmark], all_benchmarks())
    if len(benches) != 1:
        raise RunError(f"run-job runs one benchmark; {benchmark!r} names {len(benches)}")
    started = time.monotonic()
    records = run_slurm_job(Engine(), benches[0], v, run_dir.resolve(), size, parse_env(env))
    for record in records:
        detail = f"{record.get('rate'):.4g} {record.get('unit')}" if record.get("rate") else record.get("cause") or ""
        _note(f"{record['benchmark']} r{record['repeat']}-d{record['device']}: {record['status']} {detail}".rstrip())
    _note(f"run-job: {len(records)} attempt(s) in {_elapsed(time.monotonic() - started)}")
    if any(r.get("status") != "ok" for r in records):
        sys.exit(EXIT_FAILED)  # Slurm's state then says FAILED too; the records say why
