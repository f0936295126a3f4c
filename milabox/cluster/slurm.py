"""Running benchmarks through Slurm: one sbatch script per benchmark, every job's results in one run folder.

``submit`` renders a script per benchmark from the Jinja templates in ``images/slurm/`` (one per
runtime: ``docker``, ``apptainer``, ``pyxis``), submits them with ``sbatch --parsable``, follows their
states (``squeue``, then ``scontrol``/``sacct`` once they leave the queue, sleeping a few seconds between
checks) and gathers what they left. The run folder must be on a filesystem every node sees:

```
RUN_DIR/
  manifest.json            written by the submitting process at start and end (``slurm`` holds the jobs)
  <benchmark>/r0-d<dev>/   one attempt folder as in a local run (events.jsonl, container.log, record.json)
  .slurm/                  the scripts, each job's output, converted images; ignored by readers
  .nodes/node<K>/          multi-node docker jobs: the attempts of node ranks > 0 (they report no rate)
```

With the docker runtime the job runs ``milabox slurm run-job`` on each node, which writes its attempts'
records itself (:func:`run_job`). Apptainer and pyxis jobs need no milabox on the nodes: their script
writes ``slurm-step.json`` (exit code, start, end) beside each attempt's events and log, and the submitting
process writes the records when the job is over (:func:`gather`). A job that died before or during an
attempt still gets a failed record with Slurm's state as its cause: no benchmark disappears from a run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from milabox import __version__
from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine.docker import Engine, Exit
from milabox.errors import ConfigError, RunError
from milabox.execution import interrupts
from milabox.execution import multinode as mn
from milabox.execution.local import (
    RESULTS_MOUNT,
    Attempt,
    RunOptions,
    classify,
    container_request,
    last_line,
    plan_attempts,
    run_attempt,
)
from milabox.execution.provenance import host_facts
from milabox.images.naming import NamedImage, benchmark_tag, require_built, runnable
from milabox.resources import package_path
from milabox.rundir.read import (
    ATTEMPT_DIR_RE,
    EVENTS_NAME,
    FORMAT_VERSION,
    LOG_NAME,
    MANIFEST_NAME,
    RECORD_NAME,
    write_json_atomic,
)
from milabox.shipping.registry import parse_registry

RUNTIMES = ("docker", "apptainer", "pyxis")
TEMPLATES_DIR = package_path("cluster", "templates")
SLURM_DIR = ".slurm"  # hidden: run-folder readers skip it
NODES_DIR = ".nodes"
STEP_NAME = "slurm-step.json"  # written by apptainer/pyxis scripts after each attempt
#: States after which a job never runs again (Slurm's JobState names).
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                      "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
#: Added to the benchmarks' own time limits in a job's default ``--time``: image conversion, container start.
TIME_MARGIN_S = 15 * 60
_TIME = re.compile(r"^(\d+-\d{1,2}(:\d{2}(:\d{2})?)?|\d+(:\d{2}(:\d{2})?)?)$")
# Paths and values that go into #SBATCH lines and unquoted template text: no spaces, no shell syntax.
_SAFE = re.compile(r"^[A-Za-z0-9._/+@%:=,-]+$")


@dataclass(frozen=True)
class SlurmOptions:
    """How to submit a selection of benchmarks to Slurm.

    Attributes:
        run_dir: the run folder (on a filesystem the nodes share); it must not exist or be empty.
        runtime: ``docker``, ``apptainer`` or ``pyxis``.
        partition: the partition (``--partition``); empty: the cluster's default.
        nodes: nodes of a benchmark that spans nodes (plan ``all_devices``); others get one node.
        gpus_per_node: GPUs asked per node (``--gpus-per-node``); 0 asks none (CPU).
        time_limit: ``--time`` of every job (Slurm's formats, e.g. ``01:30:00``); empty: each benchmark's
            own timeout times its attempts, plus 15 minutes.
        size: ``smoke`` or ``full``.
        environment: extra variables for every container.
        registry: ``HOST[:PORT]/PREFIX`` the images were pushed to; empty: the nodes' local Docker engine.
        exclusive: ask for whole nodes (``--exclusive``, the default), so no other job disturbs the measurement
            and the benchmark gets every CPU of the node (a job asks for one CPU otherwise).
        sbatch_options: extra ``#SBATCH`` lines, e.g. ``--account=proj``.
        milabox: the command that runs milabox on the nodes (docker runtime).
        poll_s: seconds between two looks at the queue.
        command: the command line, recorded in the manifest.
    """

    run_dir: Path
    runtime: str = "docker"
    partition: str = ""
    nodes: int = 1
    gpus_per_node: int = 0
    time_limit: str = ""
    size: str = "smoke"
    environment: dict[str, str] = field(default_factory=dict)
    registry: str = ""
    exclusive: bool = True
    sbatch_options: tuple[str, ...] = ()
    milabox: tuple[str, ...] = (sys.executable, "-m", "milabox")
    poll_s: float = 5.0
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobScript:
    """One benchmark's sbatch script.

    Attributes:
        benchmark: the benchmark it runs.
        name: file name in ``RUN_DIR/.slurm/``, e.g. ``matmul-fp32.sbatch``.
        text: the script.
        nodes: nodes it asks for.
        image: the image reference the job runs.
    """

    benchmark: Benchmark
    name: str
    text: str
    nodes: int
    image: str


@dataclass(frozen=True)
class JobState:
    """What Slurm says of a job.

    Attributes:
        state: Slurm's JobState (``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``TIMEOUT``...), or
            ``UNKNOWN`` when Slurm no longer knows the job.
        exit_code: the batch script's exit code, once known.
        reason: Slurm's reason (e.g. ``NonZeroExitCode``, ``Resources``), if any.
        started, ended: ISO times, once known.
    """

    state: str
    exit_code: int | None = None
    reason: str = ""
    started: str | None = None
    ended: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the job will not run again."""
        return self.state in TERMINAL or self.state == "UNKNOWN"


class SlurmReporter:
    """What submitting and following tells whoever watches; the default says nothing."""

    def submitted(self, benchmark: str, job_id: str, script: Path) -> None: ...
    def changed(self, benchmark: str, job_id: str, state: JobState, elapsed_s: float) -> None: ...
    def waiting(self, counts: dict[str, int], elapsed_s: float) -> None: ...
    def cancelling(self, job_ids: Sequence[str]) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["sh"] = lambda value: shlex.quote(str(value))
    return env


def check_time(text: str) -> str:
    """Validate a Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``).

    Raises:
        ConfigError: not one of Slurm's formats.
    """
    if not _TIME.match(text):
        raise ConfigError(f"--time: {text!r} is not a Slurm time limit; expected HH:MM:SS (or D-HH:MM:SS, MM)")
    return text


def format_seconds(seconds: float) -> str:
    """Seconds as Slurm's ``HH:MM:SS`` (hours may exceed 24), rounded up to the minute."""
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def _safe(value: str, what: str) -> str:
    if not _SAFE.match(value):
        raise ConfigError(f"{what}: {value!r} holds spaces or shell characters that a Slurm script cannot carry; "
                          "use letters, digits and . _ / + @ % : = , -")
    return value


def check_options(options: SlurmOptions) -> None:
    """Check submission options before anything is rendered or written.

    Raises:
        ConfigError: an unknown runtime, nodes/GPUs below their minimum, a bad time limit, registry,
            partition, run folder or ``#SBATCH`` option (the message names the option).
    """
    if options.runtime not in RUNTIMES:
        raise ConfigError(f"--runtime: {options.runtime!r} is not a runtime; valid: {', '.join(RUNTIMES)}")
    if options.nodes < 1:
        raise ConfigError(f"--nodes: {options.nodes} is not a node count; expected 1 or more")
    if options.gpus_per_node < 0:
        raise ConfigError(f"--gpus-per-node: {options.gpus_per_node} is negative; expected 0 (CPU) or more")
    if options.time_limit:
        check_time(options.time_limit)
    if options.partition:
        _safe(options.partition, "--partition")
    if options.registry:
        parse_registry(options.registry)
        _safe(options.registry, "--registry")
    _safe(str(options.run_dir.resolve()), "--run-dir")
    for opt in options.sbatch_options:
        if not opt.startswith("--") or "\n" in opt:
            raise ConfigError(f"--sbatch-option: {opt!r} is not a long sbatch option; expected e.g. --account=proj")
    if options.poll_s <= 0:
        raise ConfigError(f"--poll-interval: {options.poll_s} must be a positive number of seconds")


def image_uri(group: str, vendor: Vendor, runtime: str, registry: str = "") -> str:
    """The image a job runs, as its runtime names it.

    Args:
        group: the benchmark group (one image per group and vendor).
        vendor: the vendor.
        runtime: ``docker``, ``apptainer`` or ``pyxis``.
        registry: ``HOST[:PORT][/PREFIX]`` the images were pushed to (``milabox push``); empty: each node's
            Docker engine.

    Returns:
        docker: the local tag (``milabox/matmul:cpu-0.1.0``) or ``HOST/PREFIX/matmul:cpu-0.1.0``;
        apptainer: ``docker-daemon://TAG`` or ``docker://HOST/PREFIX/...``; pyxis: ``dockerd://TAG`` (imported
        with ``enroot import`` first) or ``HOST#PREFIX/...`` (enroot's registry syntax).
    """
    tag = benchmark_tag(group, vendor)
    if not registry:
        return {"docker": tag, "apptainer": f"docker-daemon://{tag}", "pyxis": f"dockerd://{tag}"}[runtime]
    repository, version = parse_registry(registry).remote(tag)  # the name `milabox push` gave it
    remote = f"{repository}:{version}"
    if runtime == "apptainer":
        return f"docker://{remote}"
    if runtime == "pyxis":
        host, _, path = remote.partition("/")
        return f"{host}#{path}"
    return remote


def apptainer_flags(vendor: Vendor) -> list[str]:
    """GPU flags of ``apptainer exec``: the vendor data file's ``apptainer_flags`` (``--nv`` for NVIDIA...)."""
    return list(vendor.apptainer_flags)


def job_nodes(bench: Benchmark, options: SlurmOptions) -> int:
    """Nodes a benchmark's job asks for: ``--nodes`` when its plan spans nodes, else one."""
    return options.nodes if bench.plan == mn.SPANNING_PLAN else 1


def _attempts_per_job(bench: Benchmark, vendor: Vendor, options: SlurmOptions) -> int:
    per_device = bench.plan != mn.SPANNING_PLAN and vendor.device_selection != "none"
    return max(1, options.gpus_per_node) if per_device else 1


def render_script(bench: Benchmark, vendor: Vendor, options: SlurmOptions) -> JobScript:
    """Render one benchmark's sbatch script from ``images/slurm/<runtime>.sbatch.j2``.

    Args:
        bench: the benchmark.
        vendor: the vendor.
        options: the submission options (checked with :func:`check_options`).

    Returns:
        The script.

    Raises:
        ConfigError: the template refers to something not given, or a value cannot go into a script.
    """
    run_dir = options.run_dir.resolve()
    nodes = job_nodes(bench, options)
    image = image_uri(bench.group, vendor, options.runtime, options.registry)
    timeout = bench.timeout_s(options.size)
    limit = options.time_limit or format_seconds(timeout * _attempts_per_job(bench, vendor, options) + TIME_MARGIN_S)
    # The container's environment is the one a local run gives (run.container_request), minus the results path
    # that the image already sets.
    probe = container_request(Attempt(bench, 0, ()), vendor, image, run_dir, options.size, options.environment)
    # apptainer and pyxis give the container the user's home (apptainer refuses to have HOME set).
    dropped = {"MILABOX_RESULTS"} | ({"HOME"} if options.runtime != "docker" else set())
    environment = {k: v for k, v in probe.environment.items() if k not in dropped}
    _safe(bench.group, "benchmark folder")
    _safe(bench.entry, f"{bench.group}: entry")
    for key in environment:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"--env: {key!r} is not a variable name")
    context = {
        "version": __version__, "bench": bench, "vendor": vendor, "runtime": options.runtime, "size": options.size,
        "run_dir": str(run_dir), "slurm_dir": f"{run_dir}/{SLURM_DIR}", "nodes": nodes,
        "partition": options.partition, "gpus_per_node": options.gpus_per_node, "time": limit,
        "exclusive": options.exclusive, "sbatch_options": list(options.sbatch_options),
        "multinode": nodes > 1, "nproc_per_node": max(1, options.gpus_per_node) if vendor.device_selection != "none"
        else 1, "backend": mn.backend(vendor), "port_base": mn.SLURM_PORT_BASE, "port_span": mn.SLURM_PORT_SPAN,
        "milabox": shlex.join(options.milabox), "environment": environment,
        "env_args": [f"{k}={v}" for k, v in options.environment.items()], "image": image,
        "registry": options.registry, "results_mount": RESULTS_MOUNT,
        "workdir": f"/opt/milabox/benchmarks/{bench.group}", "entry": bench.entry, "timeout_s": math.ceil(timeout),
        "per_device": bench.plan != mn.SPANNING_PLAN and vendor.device_selection != "none",
        "device_env": vendor.device_env if vendor.device_selection != "none" else "",
        "apptainer_flags": " ".join(apptainer_flags(vendor)), "step_name": STEP_NAME,
    }
    template = f"{options.runtime}.sbatch.j2"
    try:
        text = _templates().get_template(template).render(**context)
    except jinja2.UndefinedError as e:
        raise ConfigError(f"images/slurm/{template}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"images/slurm/{template}: {e}") from None
    return JobScript(benchmark=bench, name=f"{bench.name}.sbatch", text=text, nodes=nodes, image=image)


def job_scripts(benchmarks: Sequence[Benchmark], vendor: Vendor, options: SlurmOptions,
                on_skip: Callable[[Benchmark, str], None] = lambda b, why: None) -> list[JobScript]:
    """Render every benchmark's script (benchmarks the vendor excludes are skipped and reported).

    Raises:
        ConfigError: invalid options or template.
        RunError: none of the benchmarks runs on the vendor.
    """
    check_options(options)
    scripts = []
    for bench in runnable(benchmarks, vendor, on_skip):
        scripts.append(render_script(bench, vendor, options))
    if not scripts:
        raise RunError(f"nothing to submit: none of the selected benchmarks runs on vendor {vendor.name}")
    return scripts


# ---------------------------------------------------------------------------------------------------------------
# Talking to Slurm


class Slurm:
    """Slurm's command-line clients (``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``scancel``).

    Args:
        environ: their environment (e.g. ``SLURM_CONF``); default ``os.environ``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=self.environ,
                                  check=False)
        except FileNotFoundError:
            raise RunError(f"`{args[0]}` is not installed here; run milabox slurm on a host with Slurm's client "
                           "commands (Debian: apt-get install slurm-client)") from None
        except subprocess.TimeoutExpired:
            raise RunError(f"`{' '.join(args[:2])}` did not answer within {timeout:g} s; is slurmctld up?") from None

    def submit(self, script: Path) -> str:
        """Submit a script with ``sbatch --parsable``; return the job id.

        Raises:
            RunError: sbatch refused it (the message is sbatch's own).
        """
        proc = self._run("sbatch", "--parsable", str(script))
        job_id = proc.stdout.strip().split(";")[0]
        if proc.returncode != 0 or not job_id.isdigit():
            why = (proc.stderr or proc.stdout).strip().splitlines()
            raise RunError(f"sbatch refused {script.name}: {why[-1] if why else f'exit code {proc.returncode}'}")
        return job_id

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """Every job's state: ``squeue`` for those Slurm still holds, then ``scontrol`` or ``sacct`` for the others."""
        if not job_ids:
            return {}
        found: dict[str, JobState] = {}
        proc = self._run("squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%i|%T|%r")
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3 and parts[0] in job_ids:
                    found[parts[0]] = JobState(parts[1], reason="" if parts[2] == "None" else parts[2])
        for job_id in job_ids:
            state = found.get(job_id)
            if state is None or state.terminal:  # the exit code and times: only scontrol and sacct know them
                found[job_id] = self._finished(job_id) or state or JobState("UNKNOWN")
        return found

    def _finished(self, job_id: str) -> JobState | None:
        proc = self._run("scontrol", "show", "job", "--oneliner", job_id)
        if proc.returncode == 0 and "JobState=" in proc.stdout:
            fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", proc.stdout))
            return JobState(fields.get("JobState", "UNKNOWN"), _exit_code(fields.get("ExitCode")),
                            "" if fields.get("Reason") == "None" else fields.get("Reason", ""),
                            _slurm_time(fields.get("StartTime")), _slurm_time(fields.get("EndTime")))
        proc = self._run("sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
                         "--format=JobID,State,ExitCode,Start,End")
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) == 5 and parts[0] == job_id:
                return JobState(parts[1].split()[0], _exit_code(parts[2]), "", _slurm_time(parts[3]),
                                _slurm_time(parts[4]))
        return None

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs (``scancel``); jobs already gone are ignored."""
        if job_ids:
            self._run("scancel", *job_ids)


def _exit_code(text: str | None) -> int | None:
    code, _, signal = (text or "").partition(":")
    if not code.isdigit():
        return None
    return 128 + int(signal) if signal.isdigit() and int(signal) and not int(code) else int(code)


def _slurm_time(text: str | None) -> str | None:
    """Slurm's local ``2026-11-24T10:00:00`` as an ISO time with its UTC offset; None for ``Unknown``/``None``."""
    try:
        return dt.datetime.fromisoformat(text or "").astimezone(dt.UTC).isoformat(timespec="seconds")
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Submitting, following, gathering


def _manifest_jobs(scripts: Sequence[JobScript], options: SlurmOptions) -> dict[str, dict]:
    return {s.benchmark.name: {
        "job_id": None, "state": None, "exit_code": None, "script": f"{SLURM_DIR}/{s.name}", "nodes": s.nodes,
        "image": s.image, "group": s.benchmark.group, "plan": s.benchmark.plan, "unit": s.benchmark.unit,
        "weight": s.benchmark.weight, "timeout_s": s.benchmark.timeout_s(options.size)} for s in scripts}


def submit(scripts: Sequence[JobScript], vendor: Vendor, options: SlurmOptions, slurm: Slurm,
           engine: Engine | None = None, reporter: SlurmReporter | None = None) -> Path:
    """Write the scripts and the manifest into a new run folder and submit one job per script.

    A script that sbatch refuses becomes a failed record (its cause is sbatch's message); the others go on.

    Args:
        scripts: from :func:`job_scripts`.
        vendor: the vendor.
        options: the submission options.
        slurm: the Slurm clients.
        engine: a local engine to record image ids from, or None (a login node without one).
        reporter: told about each submission.

    Returns:
        The run folder; its manifest's ``slurm.jobs`` holds each benchmark's job id.

    Raises:
        RunError: the run folder already holds results.
    """
    reporter = reporter or SlurmReporter()
    run_dir = options.run_dir.resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"run folder {options.run_dir} already holds results; choose another --run-dir")
    (run_dir / SLURM_DIR).mkdir(parents=True, exist_ok=True)
    images = {}
    for s in scripts:
        info = engine.image(benchmark_tag(s.benchmark.group, vendor)) if engine is not None else None
        images[s.benchmark.group] = {"tag": s.image, "id": info.id if info else None}
    manifest = {
        "format": FORMAT_VERSION, **host_facts(), "vendor": vendor.name, "size": options.size,
        "command": list(options.command or sys.argv), "benchmarks": [s.benchmark.name for s in scripts],
        "repeat": 1, "devices": ["all"], "images": images, "started": _now(), "ended": None, "status": "running",
        "slurm": {"runtime": options.runtime, "partition": options.partition or None, "nodes": options.nodes,
                  "gpus_per_node": options.gpus_per_node, "registry": options.registry or None,
                  "jobs": _manifest_jobs(scripts, options)},
    }
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    for s in scripts:
        path = run_dir / SLURM_DIR / s.name
        path.write_text(s.text)
        job = manifest["slurm"]["jobs"][s.benchmark.name]
        try:
            job["job_id"] = slurm.submit(path)
            job["state"] = "PENDING"
            reporter.submitted(s.benchmark.name, job["job_id"], path)
        except RunError as e:
            job.update(state="NOT_SUBMITTED", error=str(e))
        write_json_atomic(run_dir / MANIFEST_NAME, manifest)  # after each: a crash keeps the ids submitted so far
    return run_dir


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run folder made by :func:`submit`.

    Raises:
        RunError: no manifest, or not one written by ``milabox slurm submit``.
    """
    path = run_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("slurm"), dict):
        raise RunError(f"{path}: not a run submitted with `milabox slurm submit` (no 'slurm' field)")
    return manifest


def follow(slurm: Slurm, jobs: Mapping[str, str], poll_s: float, reporter: SlurmReporter | None = None,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, JobState]:
    """Wait until every job has ended, looking at the queue every ``poll_s`` seconds (sleeping in between).

    Args:
        slurm: the Slurm clients.
        jobs: job id -> benchmark name.
        poll_s: seconds between two looks.
        reporter: told about each state change, and every minute about the counts.
        sleep: how to wait.

    Returns:
        job id -> final state.
    """
    reporter = reporter or SlurmReporter()
    started = last_summary = time.monotonic()
    states: dict[str, JobState] = {}
    while True:
        # Jobs that ended are not asked about again: their state, exit code and times are final.
        pending = [j for j in jobs if j not in states or not states[j].terminal]
        elapsed = time.monotonic() - started
        for job_id, state in slurm.states(pending).items():
            if states.get(job_id, JobState("")).state != state.state:
                reporter.changed(jobs[job_id], job_id, state, elapsed)
            states[job_id] = state
        if all(s.terminal for s in states.values()) and len(states) == len(jobs):
            return states
        if time.monotonic() - last_summary >= 60:
            last_summary = time.monotonic()
            counts: dict[str, int] = {}
            for s in states.values():
                counts[s.state] = counts.get(s.state, 0) + 1
            reporter.waiting(counts, elapsed)
        sleep(poll_s)




def _job_cause(bench: str, job: dict, state: JobState, run_dir: Path, when: str) -> str:
    what = f"slurm job {job.get('job_id')} ended {state.state}"
    if state.exit_code is not None:
        what += f" (exit code {state.exit_code})"
    if state.state == "TIMEOUT":
        what += ": the job's --time limit was reached"
    out = run_dir / SLURM_DIR / f"{bench}-{job.get('job_id')}.out"
    tail = last_line(out)
    return f"{what} {when}" + (f"; {out.relative_to(run_dir)}: {tail}" if tail else "")


def _wall_s(started: str | None, ended: str | None) -> float | None:
    try:
        return max(0.0, (dt.datetime.fromisoformat(ended or "") - dt.datetime.fromisoformat(started or ""))
                   .total_seconds())
    except ValueError:
        return None


def _base_record(bench: str, job: dict, manifest: dict, attempt: str) -> dict:
    m = ATTEMPT_DIR_RE.match(attempt)
    return {"format": FORMAT_VERSION, "benchmark": bench, "group": job["group"],
            "repeat": int(m.group(1)) if m else 0, "device": m.group(2) if m else "all", "plan": job["plan"],
            "unit": job["unit"], "weight": job["weight"], "size": manifest.get("size"), "image": job["image"],
            "image_id": (manifest.get("images", {}).get(job["group"]) or {}).get("id"), "timeout_s": job["timeout_s"]}


def _step_record(bench: str, job: dict, manifest: dict, folder: Path, state: JobState, run_dir: Path) -> dict:
    """The record of an apptainer/pyxis attempt, from its slurm-step.json, events and log."""
    record = _base_record(bench, job, manifest, folder.name)
    try:
        step = json.loads((folder / STEP_NAME).read_text())
    except (OSError, ValueError):
        step = None
    if not isinstance(step, dict) or not isinstance(step.get("exit_code"), int):
        return {**record, "status": "failed", "cause": _job_cause(bench, job, state, run_dir, "during this attempt"),
                "rate": None, "exit_code": None, "timed_out": state.state == "TIMEOUT",
                "oom_killed": state.state == "OUT_OF_MEMORY", "wall_s": _wall_s(state.started, state.ended),
                "started": state.started, "ended": state.ended}
    code = step["exit_code"]
    # 124: `timeout` stopped the container at the benchmark's time limit (the scripts run it under `timeout`).
    exit = Exit(code=code, timed_out=code == 124, oom_killed=state.state == "OUT_OF_MEMORY")
    status, cause, rate = classify(exit, folder / EVENTS_NAME, folder / LOG_NAME, job["timeout_s"])
    return {**record, "status": status, "cause": cause, "rate": rate, "exit_code": code, "timed_out": exit.timed_out,
            "oom_killed": exit.oom_killed, "wall_s": _wall_s(step.get("started"), step.get("ended")),
            "started": step.get("started"), "ended": step.get("ended")}


def gather(run_dir: Path, manifest: dict, states: Mapping[str, JobState]) -> list[Path]:
    """Make sure every benchmark of a finished submission has a final record in the run folder.

    Records the jobs wrote (docker runtime) are kept, with the job's id and state added; records a killed job
    left ``running`` become failed with Slurm's state as their cause; apptainer/pyxis attempts get their
    record from ``slurm-step.json``; a job that left no attempt at all gets one failed ``r0-dall`` record.

    Args:
        run_dir: the run folder.
        manifest: its manifest (``slurm.jobs`` gives each benchmark's job and metadata).
        states: job id -> final state.

    Returns:
        The record files written.
    """
    written = []
    for bench, job in manifest["slurm"]["jobs"].items():
        state = states.get(job.get("job_id") or "") or JobState(job.get("state") or "UNKNOWN")
        slurm_info = {"job_id": job.get("job_id"), "state": state.state, "runtime": manifest["slurm"]["runtime"]}
        folders = sorted(p for p in (run_dir / bench).glob("r*-d*") if p.is_dir() and ATTEMPT_DIR_RE.match(p.name))
        for folder in folders:
            path = folder / RECORD_NAME
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                record = None
            if not isinstance(record, dict):
                record = _step_record(bench, job, manifest, folder, state, run_dir)
            elif record.get("status") == "running":
                record.update(status="failed", cause=_job_cause(bench, job, state, run_dir, "during this attempt"),
                              timed_out=state.state == "TIMEOUT", ended=state.ended or _now())
            elif record.get("slurm", {}) | slurm_info == record.get("slurm"):
                continue  # final, and already says which job wrote it
            record["slurm"] = {**record.get("slurm", {}), **slurm_info}
            write_json_atomic(path, record)
            written.append(path)
        if not folders:
            folder = run_dir / bench / "r0-dall"
            folder.mkdir(parents=True, exist_ok=True)
            when = "before the benchmark ran" if job.get("job_id") else ""
            cause = _job_cause(bench, job, state, run_dir, when) if job.get("job_id") else job.get("error", "")
            record = {**_base_record(bench, job, manifest, folder.name), "status": "failed",
                      "cause": cause or "the job left no results", "rate": None, "exit_code": state.exit_code,
                      "timed_out": state.state == "TIMEOUT", "oom_killed": state.state == "OUT_OF_MEMORY",
                      "wall_s": _wall_s(state.started, state.ended), "started": state.started, "ended": state.ended,
                      "slurm": slurm_info}
            write_json_atomic(folder / RECORD_NAME, record)
            written.append(folder / RECORD_NAME)
    return written


def collect(run_dir: Path, slurm: Slurm, poll_s: float = 5.0, reporter: SlurmReporter | None = None,
            sleep: Callable[[float], None] = time.sleep) -> Path:
    """Follow a submission's jobs to their end, gather their results and finish the manifest.

    Ctrl-C (or SIGTERM) cancels the jobs still queued or running; their attempts are recorded as failed
    with Slurm's state and the manifest says ``interrupted``.

    Args:
        run_dir: a run folder made by :func:`submit`.
        slurm: the Slurm clients.
        poll_s: seconds between two looks at the queue.
        reporter: told about state changes.
        sleep: how to wait.

    Returns:
        The run folder.

    Raises:
        RunError: not a run folder made by ``milabox slurm submit``.
    """
    manifest = read_manifest(run_dir)
    jobs = {j["job_id"]: bench for bench, j in manifest["slurm"]["jobs"].items() if j.get("job_id")}
    status = "complete"
    with interrupts.scope() as stop:
        try:
            with stop.interruptible():
                states = follow(slurm, jobs, poll_s, reporter, sleep)
        except KeyboardInterrupt:
            status = "interrupted"
            (reporter or SlurmReporter()).cancelling(list(jobs))
            slurm.cancel(list(jobs))
            states = _settled(slurm, jobs, sleep, stop)
        for job_id, bench in jobs.items():
            job = manifest["slurm"]["jobs"][bench]
            job.update(state=states[job_id].state, exit_code=states[job_id].exit_code)
        gather(run_dir, manifest, states)
        manifest.update(ended=_now(), status=status)
        write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    return run_dir


def _settled(slurm: Slurm, jobs: Mapping[str, str], sleep: Callable[[float], None], stop: interrupts.StopRequest,
             wait_s: float = 90) -> dict[str, JobState]:
    """States after a cancel: wait until Slurm has ended every job (COMPLETING lasts until their processes are
    gone, up to Slurm's KillWait of 30 s plus the containers' own stop), so the records they write are final.
    A second stop signal ends the wait: what is there is gathered."""
    states: dict[str, JobState] = {}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and stop.signals < 2:
        states.update(slurm.states([j for j in jobs if j not in states or not states[j].terminal]))
        if all(s.terminal for s in states.values()):
            break
        sleep(1)
    return {j: states.get(j, JobState("CANCELLED")) for j in jobs}


# ---------------------------------------------------------------------------------------------------------------
# Inside a job (docker runtime)


def job_devices(vendor: Vendor, environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The GPUs Slurm gave this step (``SLURM_STEP_GPUS``, else ``SLURM_JOB_GPUS``), for a vendor that selects devices.

    Docker containers are not in the job's cgroup, so the allocation must be passed to the engine explicitly.
    """
    if vendor.device_selection == "none":
        return None
    text = environ.get("SLURM_STEP_GPUS") or environ.get("SLURM_JOB_GPUS") or ""
    ids = tuple(d.strip() for d in text.split(",") if d.strip())
    return ids or None


def run_job(engine: Engine, bench: Benchmark, vendor: Vendor, run_dir: Path, size: str,
            environment: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> list[dict]:
    """Run one benchmark's attempts on this node into an existing run folder (what a docker-runtime job does).

    Node rank 0 (or a single node) writes ``RUN_DIR/<benchmark>/...``; node ranks above 0 of a multi-node
    benchmark write under ``RUN_DIR/.nodes/node<K>/``. No manifest is written: the submitting process owns it.

    Args:
        engine: this node's engine.
        bench: the benchmark.
        vendor: the vendor.
        run_dir: the shared run folder.
        size: ``smoke`` or ``full``.
        environment: extra variables for the container.
        environ: this process's environment (Slurm's variables); default ``os.environ``.

    Returns:
        The records written.

    Raises:
        RunError: the run folder has no manifest, or the image is not on this node.
        ConfigError: Slurm's variables are malformed.
        KeyboardInterrupt: the job was cancelled (after recording).
    """
    env = os.environ if environ is None else environ
    if not (run_dir / MANIFEST_NAME).is_file():
        raise RunError(f"{run_dir}: no {MANIFEST_NAME}; run-job writes into a folder made by `milabox slurm submit`")
    spec = mn.from_slurm(env) if bench.plan == mn.SPANNING_PLAN else None
    if spec is not None and spec.nnodes == 1:
        spec = None
    target = run_dir / NODES_DIR / f"node{spec.node_rank}" if spec is not None and spec.is_worker else run_dir
    tag = benchmark_tag(bench.group, vendor)
    info = require_built(engine, NamedImage(bench.group, tag), vendor, where=f"on node {socket.gethostname()}")
    options = RunOptions(size=size, devices=job_devices(vendor, env), run_dir=target,
                         environment=dict(environment or {}), nodes=spec, command=tuple(sys.argv))
    info_slurm = {"job_id": env.get("SLURM_JOB_ID"), "node": socket.gethostname(), "runtime": "docker"}
    records = []
    with interrupts.scope() as stop:
        for attempt in plan_attempts([bench], vendor, options):
            if stop.requested:  # scancel between two attempts: run no more
                raise KeyboardInterrupt
            path = target / attempt.folder / RECORD_NAME
            try:
                record = run_attempt(engine, attempt, vendor, (tag, info.id), target, options)
            except KeyboardInterrupt:  # scancel: the record says interrupted; it also says which job
                write_json_atomic(path, {**json.loads(path.read_text()), "slurm": info_slurm})
                raise
            record["slurm"] = info_slurm
            write_json_atomic(path, record)
            records.append(record)
    return records

