"""What a run will do: its options, and the attempts (benchmark × repeat × devices) they expand to."""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.errors import ConfigError
from milabox.execution.multinode import NodeSpec, local_gpu_count
from milabox.images.naming import runnable
from milabox.rundir.layout import attempt_folder
from milabox_runtime.run import LOOP_DEFAULTS

#: Where an attempt runs: in its own container (docker) or as a process of this Python environment (native).
RUNTIMES = ("docker", "native")
#: ``--repeat auto``: the attempts whose spread chooses how many repeats a benchmark gets.
AUTO_FIRST_REPEATS = 3
#: The manifest keys a resumed run must share with the run it resumes (its setup), in the order they are checked.
RESUME_SETUP = ("milabox_version", "vendor", "size", "runtime", "benchmarks", "repeat", "devices", "images",
                "overrides")
#: Where the host lists each NUMA node's CPUs (``0-3,8-11``), for the ``cpuset`` device selection.
NUMA_CPULISTS = "/sys/devices/system/node/node*/cpulist"


@dataclass(frozen=True)
class RunOptions:
    """How to run a selection of benchmarks.

    Attributes:
        size: ``smoke`` (seconds, any CPU) or ``full`` (sized for an 80 GB accelerator).
        repeat: attempts per benchmark and device (default 1).
        until_sem_pct: stop repeating a benchmark once the sem% of its attempt rates is below this (at least
            two successful attempts, at most ``repeat`` repeats); None: always ``repeat`` repeats.
        auto_repeat: ``--repeat auto`` (default false): run ``AUTO_FIRST_REPEATS`` repeats, then as many as
            ``milabox.stats.repeats_for_cv`` chooses from the CV of their node rates (``repeat`` is ignored).
        until_stable: stop repeating a benchmark at its first repeat with no unstable attempt (a transient slow
            phase in its step rates), at most ``repeat`` repeats (default false: always ``repeat``).
        min_seconds: measured seconds each attempt reaches before it stops (``min_seconds`` in the config
            handed to the container); None (default): the size's own (0 where it has none).
        overrides: benchmark row -> parameter -> value replacing the size's (``--set``; default none).
        timeout_s: wall-clock limit per container; None: each benchmark's own (its size's ``timeout_s``).
        devices: device ids (``--devices 0,1``); None: every visible device (see :func:`visible_devices`).
        run_dir: the run folder to create; it must not exist or be empty.
        environment: extra variables for every container (e.g. ``OMP_NUM_THREADS``).
        memory: memory limit per container, e.g. ``64g`` (empty: none).
        command: the command line, recorded in the manifest.
        nodes: this node's place in a multi-node run (``--nodes``, or Slurm's variables); None: one node.
        telemetry_interval_s: seconds between telemetry samples while a container runs; 0: no sampling.
        runtime: ``docker`` (default: one container per attempt) or ``native`` (one process per attempt in this
            Python environment, with its own torch: sites without a container engine, the container-overhead
            baseline, GPU checks on machines without Docker).
        resume: ``--resume`` (default false): ``run_dir`` holds an earlier run of the same setup; run only its
            missing, failed or interrupted attempts (see :func:`resume_attempts`).
        run_id: the run's id, set on every container as the ``RUN_ID_LABEL`` label (empty: the run makes one).
    """

    size: str = "smoke"
    repeat: int = 1
    until_sem_pct: float | None = None
    timeout_s: float | None = None
    devices: tuple[str, ...] | None = None
    run_dir: Path = Path("runs")
    environment: dict[str, str] = field(default_factory=dict)
    memory: str = ""
    command: tuple[str, ...] = ()
    nodes: NodeSpec | None = None
    telemetry_interval_s: float = 1.0
    runtime: str = "docker"
    auto_repeat: bool = False
    until_stable: bool = False
    min_seconds: float | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    resume: bool = False
    run_id: str = ""


@dataclass(frozen=True)
class Attempt:
    """One container to run: a benchmark, a repeat, a device set.

    Attributes:
        benchmark: the benchmark.
        repeat: the repeat, from 0.
        devices: device ids; empty: every device.
        cpus: the host CPUs it is pinned to (``cpuset`` vendors with ``--devices``), e.g. ``0-3``; empty: all.
    """

    benchmark: Benchmark
    repeat: int
    devices: tuple[str, ...]
    cpus: str = ""

    @property
    def device_label(self) -> str:
        return "all" if not self.devices else "+".join(self.devices)

    @property
    def folder(self) -> str:
        return attempt_folder(self.benchmark.name, self.repeat, self.device_label)


def _cpulist(text: str) -> list[int]:
    cpus: list[int] = []
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def _cpuset(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def core_sets(devices: Sequence[str], numa_glob: str | None = None,
              cores: Sequence[int] | None = None) -> dict[str, list[int]]:
    """The disjoint host core set of each selected CPU "device" (the ``cpuset`` device selection).

    Several NUMA nodes: device N is NUMA node N's CPUs (within this process's affinity). One node: this process's
    cores split evenly, in order, over the selected devices.

    Args:
        devices: the selected device ids (``--devices``), integers.
        numa_glob: where the NUMA nodes' cpulists are (default ``NUMA_CPULISTS``).
        cores: this process's cores (default ``os.sched_getaffinity(0)``).

    Returns:
        Device id -> its cores.

    Raises:
        ConfigError: an id is not an integer, repeats, names no NUMA node, or there are more devices than cores.
    """
    allowed = sorted(os.sched_getaffinity(0) if cores is None else cores)
    nodes = []
    for path in sorted(glob.glob(numa_glob or NUMA_CPULISTS), key=lambda p: int(re.sub(r"\D", "", Path(p).parent.name) or 0)):
        node = [c for c in _cpulist(Path(path).read_text()) if c in allowed]
        if node:
            nodes.append(node)
    if len(set(devices)) != len(devices) or not all(d.isdigit() for d in devices):
        raise ConfigError(f"--devices: {','.join(devices)} are not distinct CPU device numbers; expected e.g. 0,1")
    if len(nodes) > 1:
        bad = [d for d in devices if int(d) >= len(nodes)]
        if bad:
            raise ConfigError(f"--devices: CPU device {bad[0]} is not a NUMA node of this host; valid: "
                              f"0-{len(nodes) - 1}")
        return {d: nodes[int(d)] for d in devices}
    if len(devices) > len(allowed):
        raise ConfigError(f"--devices: {len(devices)} CPU devices but only {len(allowed)} cores to split; "
                          f"select at most {len(allowed)}")
    share, extra = divmod(len(allowed), len(devices))
    sets, start = {}, 0
    for number, d in enumerate(devices):
        end = start + share + (1 if number < extra else 0)
        sets[d] = allowed[start:end]
        start = end
    return sets


def visible_devices(vendor: Vendor) -> tuple[str, ...] | None:
    """The devices a run measures when ``--devices`` is not given.

    GPUs: every one the vendor's ``device_discovery`` finds (so per-device benchmarks measure them all, together).
    A ``cpuset`` or ``none`` vendor: None, one device with every core (the CPU's numbers stay those of one
    container; ``--devices`` splits it).

    Args:
        vendor: the vendor.

    Returns:
        Device ids, or None for "all, as one device" (also for a GPU host whose devices cannot be counted).
    """
    if vendor.device_selection in ("none", "cpuset"):
        return None
    count = local_gpu_count(vendor)
    return tuple(str(n) for n in range(count)) or None


def batches(attempts: Sequence[Attempt]) -> list[list[Attempt]]:
    """Group planned attempts into the batches that run together: one benchmark's repeat, every device at once.

    Args:
        attempts: as :func:`plan_attempts` orders them.

    Returns:
        The batches, in order.
    """
    out: list[list[Attempt]] = []
    for attempt in attempts:
        if out and (out[-1][0].benchmark.name, out[-1][0].repeat) == (attempt.benchmark.name, attempt.repeat):
            out[-1].append(attempt)
        else:
            out.append([attempt])
    return out


def attempt_config(bench: Benchmark, options: RunOptions) -> dict[str, Any]:
    """The config handed to a benchmark's containers: its size's parameters, ``--set``, ``--min-seconds``.

    Args:
        bench: the benchmark.
        options: the run's options.

    Returns:
        The config (``MILABOX_CONFIG``).
    """
    config = bench.config(options.size, options.overrides.get(bench.name))
    if options.min_seconds is not None:
        config["min_seconds"] = options.min_seconds
    return config


def _check_seconds(bench: Benchmark, options: RunOptions) -> None:
    config = attempt_config(bench, options)
    low, cap = config.get("min_seconds", 0), config.get("max_seconds", LOOP_DEFAULTS["max_seconds"])
    if low > cap:
        raise ConfigError(f"--min-seconds {low:g}: above {bench.name}'s max_seconds ({cap:g} s), the hard cap; "
                          f"lower it or raise the cap with --set {bench.name}.max_seconds=SECONDS")


def plan_attempts(benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
                  on_skip: Callable[[Benchmark, str], None] = lambda b, why: None) -> list[Attempt]:
    """Expand benchmarks into attempts: repeats × devices (per_device) or repeats (all_devices).

    Per-device benchmarks get one attempt per selected device, else per visible device (:func:`visible_devices`);
    a ``cpuset`` vendor pins each attempt to its devices' core sets (:func:`core_sets`).

    Args:
        benchmarks: the selection.
        vendor: the vendor.
        options: the run's options.
        on_skip: told about each benchmark that does not run on the vendor.

    Returns:
        The attempts, benchmark by benchmark, repeat by repeat.

    Raises:
        ConfigError: devices were selected for a vendor that has none to select, until_sem_pct is not > 0, or
            the CPU devices cannot be split (see :func:`core_sets`).
    """
    if options.runtime not in RUNTIMES:
        raise ConfigError(f"--runtime: {options.runtime!r} is not one of {', '.join(RUNTIMES)}")
    if options.devices and vendor.device_selection == "none":
        raise ConfigError(f"--devices: vendor {vendor.name} has no selectable devices; leave --devices out")
    if options.until_sem_pct is not None and not options.until_sem_pct > 0:
        raise ConfigError(f"--until-sem: must be a percentage > 0, not {options.until_sem_pct!r}")
    if options.min_seconds is not None and not options.min_seconds >= 0:
        raise ConfigError(f"--min-seconds: must be a number of seconds >= 0, not {options.min_seconds!r}")
    if options.auto_repeat and options.until_stable:
        raise ConfigError("--until-stable repeats up to --repeat N; it cannot be combined with --repeat auto")
    sets = core_sets(options.devices) if options.devices and vendor.device_selection == "cpuset" else {}
    visible = options.devices or (visible_devices(vendor) if options.nodes is None else None)
    repeats = AUTO_FIRST_REPEATS if options.auto_repeat else 1 if options.until_stable else options.repeat
    attempts = []
    nnodes = options.nodes.nnodes if options.nodes is not None else 1
    for bench in runnable(benchmarks, vendor, on_skip):
        if (why := unmet_needs(bench, options.devices or visible, nnodes)) is not None:
            on_skip(bench, why)
            continue
        _check_seconds(bench, options)
        device_sets: list[tuple[str, ...]] = [()]
        if bench.plan == "per_device" and visible:
            device_sets = [(d,) for d in visible]
        elif options.devices:
            device_sets = [tuple(options.devices)]
        for repeat in range(repeats):
            attempts.extend(Attempt(bench, repeat, devs, _cpuset([c for d in devs for c in sets.get(d, [])]))
                            for devs in device_sets)
    return attempts




def unmet_needs(bench: Benchmark, devices: Sequence[str] | None, nnodes: int) -> str | None:
    """Why a run cannot hold a benchmark that needs more devices or nodes than it has, if it cannot.

    Args:
        bench: the benchmark (its ``min_devices`` and ``min_nodes``).
        devices: the run's devices (``--devices``, else the visible GPUs); None: the host as one device that
            cannot be counted (a CPU, whose multi-process rows run as gloo processes, or GPUs nothing could
            count): device needs are then left to the benchmark.
        nnodes: the run's nodes (1 without ``--nodes``).

    Returns:
        One line (``needs 2 nodes; this run has 1 (...)``), or None when the run can hold it.
    """
    if bench.min_nodes > nnodes:
        return (f"needs {bench.min_nodes} nodes; this run has {nnodes} (run it with --nodes, or under Slurm with "
                f"{bench.min_nodes} nodes)")
    if devices is not None and bench.min_devices > len(devices):
        return f"needs {bench.min_devices} devices; this run has {len(devices)}"
    return None


def check_resumable(recorded: dict[str, Any], fresh: dict[str, Any], manifest_path: Path) -> None:
    """Refuse to resume a run whose setup differs from what this command would run now.

    Args:
        recorded: the run's manifest.
        fresh: the manifest this command would write (same keys).
        manifest_path: the manifest's path (named in the message).

    Raises:
        ConfigError: a ``RESUME_SETUP`` key differs (the message names it, with both values).
    """
    for key in RESUME_SETUP:
        old, new = recorded.get(key), fresh.get(key)
        if key == "images":  # an image is the same when its id is (a re-tag or a push changes only the ref)
            old = {g: i.get("id") for g, i in (old or {}).items()}
            new = {g: i.get("id") for g, i in (new or {}).items()}
        if key == "runtime":
            old = old or RUNTIMES[0]
        if old != new:
            raise ConfigError(f"--resume: {manifest_path} was run with {key} {old!r}, this setup has {new!r}; "
                              "resume with the same setup or start a new run")


def resume_attempts(planned: Sequence[Attempt], records: dict[str, dict[str, Any]],
                    done_by_sem: Callable[[str], bool] = lambda name: False) -> tuple[list[Attempt], dict[str, str]]:
    """What a resumed run runs: each planned attempt not yet passed, a retry in a new folder for a failed one.

    A planned attempt whose folder has no record runs in that folder; one whose record (followed through its
    ``superseded_by`` chain) did not pass is retried at the next repeat index free for its benchmark and devices,
    so no attempt folder is ever overwritten.

    Args:
        planned: the attempts the setup plans (:func:`plan_attempts`).
        records: attempt folder -> its record, for every attempt folder of the run.
        done_by_sem: whether a benchmark already reached ``--until-sem``: its missing repeats are not run.

    Returns:
        (the attempts to run, in planned order; new folder -> the folder of the attempt it supersedes).
    """
    used: dict[tuple[str, str], int] = {}
    for folder, record in records.items():
        key = (str(record.get("benchmark", folder.split("/")[0])), str(record.get("device", "")))
        used[key] = max(used.get(key, -1), int(record.get("repeat", 0)))
    for attempt in planned:  # a retry never takes a planned repeat's folder
        key = (attempt.benchmark.name, attempt.device_label)
        used[key] = max(used.get(key, -1), attempt.repeat)
    todo: list[Attempt] = []
    superseded: dict[str, str] = {}
    for attempt in planned:
        folder = attempt.folder
        while folder in records and records[folder].get("superseded_by") in records:
            folder = records[folder]["superseded_by"]
        record = records.get(folder)
        if record is None:
            if not done_by_sem(attempt.benchmark.name):
                todo.append(attempt)
            continue
        if record.get("status") == "ok":
            continue
        key = (attempt.benchmark.name, attempt.device_label)
        used[key] += 1
        retry = dataclasses.replace(attempt, repeat=used[key])
        todo.append(retry)
        superseded[retry.folder] = folder
    order = list(dict.fromkeys(a.benchmark.name for a in planned))
    return sorted(todo, key=lambda a: (order.index(a.benchmark.name), a.repeat)), superseded
