"""Inside a docker-runtime job: ``milabox slurm run-job`` runs one benchmark's attempts on this node."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine
from milabox.errors import RunError
from milabox.execution import interrupts
from milabox.execution import multinode as mn
from milabox.execution.attempt import run_attempt
from milabox.execution.plan import RunOptions, plan_attempts
from milabox.execution.telemetry import Telemetry
from milabox.images.naming import NamedImage, benchmark_tag, require_built
from milabox.rundir.layout import MANIFEST_NAME, RECORD_NAME, write_json_atomic

NODES_DIR = ".nodes"


def job_devices(vendor: Vendor, environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The GPUs Slurm gave this step (``SLURM_STEP_GPUS``, else ``SLURM_JOB_GPUS``), for a vendor that selects devices.

    Docker containers are not in the job's cgroup, so the allocation must be passed to the engine explicitly.
    Slurm's GPU ids are its GRES indices: NVML's PCI bus order where gres.conf has ``AutoDetect=nvml``, which CUDA
    follows only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (Slurm doc/html/gres.shtml, "GPU Management"; cuda.toml sets it).

    Args:
        vendor: the vendor.
        environ: this process's environment (Slurm's variables).

    Returns:
        The device ids, or None: all of them (no allocation given, or a vendor whose devices are not GPUs:
        ``none``, or ``cpuset`` core sets).
    """
    if vendor.device_selection in ("none", "cpuset"):
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
    # Sampled as a local run samples (execution/local.py): opened once for the job, on this node's devices.
    telemetry = Telemetry.open(vendor.telemetry, options.devices,
                               **({} if options.telemetry_interval_s > 0 else {"on_warning": lambda m: None}))
    with contextlib.closing(telemetry), interrupts.scope() as stop:
        for attempt in plan_attempts([bench], vendor, options):
            if stop.requested:  # scancel between two attempts: run no more
                raise KeyboardInterrupt
            path = target / attempt.folder / RECORD_NAME
            try:
                record = run_attempt(engine, attempt, vendor, (tag, info.id), target, options, telemetry)
            except KeyboardInterrupt:  # scancel: the record says interrupted; it also says which job
                write_json_atomic(path, {**json.loads(path.read_text()), "slurm": info_slurm})
                raise
            record["slurm"] = info_slurm
            write_json_atomic(path, record)
            records.append(record)
    return records

