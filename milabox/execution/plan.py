"""What a run will do: its options, and the attempts (benchmark × repeat × devices) they expand to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.errors import ConfigError
from milabox.execution.multinode import NodeSpec
from milabox.images.naming import runnable
from milabox.rundir.layout import attempt_folder

#: Where an attempt runs: in its own container (docker) or as a process of this Python environment (native).
RUNTIMES = ("docker", "native")


@dataclass(frozen=True)
class RunOptions:
    """How to run a selection of benchmarks.

    Attributes:
        size: ``smoke`` (seconds, any CPU) or ``full`` (sized for an 80 GB accelerator).
        repeat: attempts per benchmark and device (default 1).
        until_sem_pct: stop repeating a benchmark once the sem% of its attempt rates is below this (at least
            two successful attempts, at most ``repeat`` repeats); None: always ``repeat`` repeats.
        timeout_s: wall-clock limit per container; None: each benchmark's own (its size's ``timeout_s``).
        devices: device ids (``--devices 0,1``); None: one attempt with every device of the vendor.
        run_dir: the run folder to create; it must not exist or be empty.
        environment: extra variables for every container (e.g. ``OMP_NUM_THREADS``).
        memory: memory limit per container, e.g. ``64g`` (empty: none).
        command: the command line, recorded in the manifest.
        nodes: this node's place in a multi-node run (``--nodes``, or Slurm's variables); None: one node.
        telemetry_interval_s: seconds between telemetry samples while a container runs; 0: no sampling.
        runtime: ``docker`` (default: one container per attempt) or ``native`` (one process per attempt in this
            Python environment, with its own torch: sites without a container engine, the container-overhead
            baseline, GPU checks on machines without Docker).
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


@dataclass(frozen=True)
class Attempt:
    """One container to run: a benchmark, a repeat, a device set."""

    benchmark: Benchmark
    repeat: int
    devices: tuple[str, ...]

    @property
    def device_label(self) -> str:
        return "all" if not self.devices else "+".join(self.devices)

    @property
    def folder(self) -> str:
        return attempt_folder(self.benchmark.name, self.repeat, self.device_label)


def plan_attempts(benchmarks: Sequence[Benchmark], vendor: Vendor, options: RunOptions,
                  on_skip: Callable[[Benchmark, str], None] = lambda b, why: None) -> list[Attempt]:
    """Expand benchmarks into attempts: repeats × devices (per_device) or repeats (all_devices).

    Raises:
        ConfigError: devices were selected for a vendor that has none to select, or until_sem_pct is not > 0.
    """
    if options.runtime not in RUNTIMES:
        raise ConfigError(f"--runtime: {options.runtime!r} is not one of {', '.join(RUNTIMES)}")
    if options.devices and vendor.device_selection == "none":
        raise ConfigError(f"--devices: vendor {vendor.name} has no selectable devices; leave --devices out")
    if options.until_sem_pct is not None and not options.until_sem_pct > 0:
        raise ConfigError(f"--until-sem: must be a percentage > 0, not {options.until_sem_pct!r}")
    attempts = []
    for bench in runnable(benchmarks, vendor, on_skip):
        device_sets: list[tuple[str, ...]] = [()]
        if options.devices:
            device_sets = ([(d,) for d in options.devices] if bench.plan == "per_device"
                           else [tuple(options.devices)])
        for repeat in range(options.repeat):
            attempts.extend(Attempt(bench, repeat, devs) for devs in device_sets)
    return attempts


