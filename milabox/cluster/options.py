"""How a selection of benchmarks is submitted to Slurm: the options, and their checks before anything is written."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from milabox.errors import ConfigError
from milabox.shipping.registry import parse_registry

RUNTIMES = ("docker", "apptainer", "pyxis")
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


def check_time(text: str) -> str:
    """Validate a Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``).

    Args:
        text: the limit, as given to ``--time``.

    Returns:
        The limit, unchanged.

    Raises:
        ConfigError: not one of Slurm's formats.
    """
    if not _TIME.match(text):
        raise ConfigError(f"--time: {text!r} is not a Slurm time limit; expected HH:MM:SS (or D-HH:MM:SS, MM)")
    return text


def format_seconds(seconds: float) -> str:
    """Seconds as Slurm's ``HH:MM:SS`` (hours may exceed 24), rounded up to the minute.

    Args:
        seconds: a duration.

    Returns:
        The duration, e.g. ``01:30:00``.
    """
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def check_safe(value: str, what: str) -> str:
    """Check that a value can go unquoted into a Slurm script (``#SBATCH`` lines, template text).

    Args:
        value: the value.
        what: what it is, for the message (e.g. ``--partition``).

    Returns:
        The value.

    Raises:
        ConfigError: it holds spaces or shell characters.
    """
    if not _SAFE.match(value):
        raise ConfigError(f"{what}: {value!r} holds spaces or shell characters that a Slurm script cannot carry; "
                          "use letters, digits and . _ / + @ % : = , -")
    return value


def check_options(options: SlurmOptions) -> None:
    """Check submission options before anything is rendered or written.

    Args:
        options: the submission options.

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
        check_safe(options.partition, "--partition")
    if options.registry:
        parse_registry(options.registry)
        check_safe(options.registry, "--registry")
    check_safe(str(options.run_dir.resolve()), "--run-dir")
    for opt in options.sbatch_options:
        if not opt.startswith("--") or "\n" in opt:
            raise ConfigError(f"--sbatch-option: {opt!r} is not a long sbatch option; expected e.g. --account=proj")
    if options.poll_s <= 0:
        raise ConfigError(f"--poll-interval: {options.poll_s} must be a positive number of seconds")
