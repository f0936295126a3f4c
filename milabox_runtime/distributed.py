"""Benchmarks that span several processes (plan ``all_devices``): torchrun launch, process group, rank 0 agreement.

An ``all_devices`` benchmark calls :func:`launch_if_needed` first thing in its ``__main__``. When more
than one process is wanted, the script is re-executed under torchrun (``python -m
torch.distributed.run``), whose exit code becomes the container's; each worker then runs the script
again and :func:`init_process_group` joins it to the others. Only global rank 0 writes events (see
:class:`milabox_runtime.Run`).

How many processes, where the rendezvous is (set by the host for multi-node runs, one container a node):

- ``MILABOX_NNODES`` (default 1), ``MILABOX_NODE_RANK`` (default 0);
- ``MILABOX_MASTER_ADDR`` / ``MILABOX_MASTER_PORT`` (default port 29500); without an address a
  single node uses ``--standalone`` on 127.0.0.1 (containers run with network_mode none: loopback
  only, and their host name may not resolve);
- ``MILABOX_NPROC_PER_NODE``, else the number of visible GPUs, else the size config's ``nproc`` on CPUs
  (default 1);
- ``MILABOX_DIST_BACKEND`` overrides the collective backend chosen from the device type.

Standard library only at import time, like the rest of the runtime.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from . import device as _dev

#: Collective backend per device type. ROCm builds of torch answer to "nccl" (RCCL underneath).
BACKENDS = {"cpu": "gloo", "cuda": "nccl", "xpu": "xccl"}
DEFAULT_MASTER_PORT = 29500
#: Loopback is the only interface of a container with network_mode none; gloo must not look elsewhere.
_LOOPBACK_IFNAME = "lo"
LOOPBACK_ADDR = "127.0.0.1"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer >= {minimum}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: expected an integer >= {minimum}")
    return value


def config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The host's MILABOX_CONFIG as a dict (empty when unset).

    Raises:
        ValueError: it is not valid JSON.
        TypeError: it is JSON but not an object.
    """
    raw = env.get("MILABOX_CONFIG", "").strip()
    try:
        config = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"MILABOX_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise TypeError(f"MILABOX_CONFIG must be a JSON object, not {type(config).__name__}")
    return config


def config_value(key: str, default: Any = None, environ: Mapping[str, str] | None = None) -> Any:
    """One setting of the host's MILABOX_CONFIG, read before anything else runs: what a benchmark's ``__main__``
    asks to decide whether to call :func:`launch_if_needed` (e.g. ``ddp``, ``parallel``).

    Args:
        key: the config key.
        default: returned when the key is absent, or the config is missing or malformed (``mr.main`` reports
            a malformed one right after, in the run's events).
        environ: the environment (default: ``os.environ``).
    """
    try:
        return config_from_env(os.environ if environ is None else environ).get(key, default)
    except (ValueError, TypeError):
        return default


def device_type(environ: Mapping[str, str] | None = None) -> str:
    """The device type the workers will use, without importing torch where the image says "cpu".

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        "cpu", "cuda" or "xpu".

    Raises:
        ValueError, RuntimeError: as :func:`milabox_runtime.device.resolve_device_type`.
    """
    env = os.environ if environ is None else environ
    forced = env.get("MILABOX_DEVICE", "").strip()
    if not forced and env.get("MILABOX_VENDOR", "").strip().lower() == "cpu":
        forced = "cpu"  # the CPU runtime image: no torch import needed to know it
    return _dev.resolve_device_type(forced or None)


def _device_count(kind: str) -> int:
    torch = _dev.import_torch(required=True)
    return int(getattr(torch, kind).device_count())


def nproc_per_node(environ: Mapping[str, str] | None = None) -> int:
    """Processes this node runs: ``MILABOX_NPROC_PER_NODE``, else the GPU count, else config ``nproc``.

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        A count >= 1.

    Raises:
        ValueError: a variable or the config's ``nproc`` is not a positive integer, or MILABOX_CONFIG
            is not valid JSON.
        TypeError: MILABOX_CONFIG is not a JSON object.
    """
    env = os.environ if environ is None else environ
    explicit = _int(env, "MILABOX_NPROC_PER_NODE", 0, 1)
    if explicit:
        return explicit
    kind = device_type(env)
    if kind != "cpu":
        return max(1, _device_count(kind))
    nproc = config_from_env(env).get("nproc", 1)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"config 'nproc' must be an integer >= 1, not {nproc!r}")
    return nproc


def torchrun_command(script: str, args: Sequence[str] = (), environ: Mapping[str, str] | None = None,
                     nproc: int | None = None) -> list[str]:
    """The torchrun command line that runs ``script`` on this node.

    Args:
        script: the benchmark script.
        args: its arguments.
        environ: the environment holding the MILABOX_* layout variables (default ``os.environ``).
        nproc: processes on this node (default :func:`nproc_per_node`).

    Returns:
        The argv, starting with this Python interpreter.

    Raises:
        ValueError: a layout variable is malformed, or several nodes are asked for without
            ``MILABOX_MASTER_ADDR``.
        TypeError: MILABOX_CONFIG is not a JSON object.
    """
    env = os.environ if environ is None else environ
    nnodes = _int(env, "MILABOX_NNODES", 1, 1)
    node_rank = _int(env, "MILABOX_NODE_RANK", 0, 0)
    if node_rank >= nnodes:
        raise ValueError(f"MILABOX_NODE_RANK={node_rank} must be below MILABOX_NNODES={nnodes}")
    nproc = nproc_per_node(env) if nproc is None else nproc
    addr = env.get("MILABOX_MASTER_ADDR", "").strip()
    port = _int(env, "MILABOX_MASTER_PORT", DEFAULT_MASTER_PORT, 1)
    if port > 65535:
        raise ValueError(f"MILABOX_MASTER_PORT={port}: expected a TCP port (1-65535)")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    if addr:
        # Static rendezvous: node rank 0 hosts the store at addr:port, the others connect to it.
        cmd += [f"--node-rank={node_rank}", f"--master-addr={addr}", f"--master-port={port}"]
    elif nnodes == 1:
        # A local rendezvous on a free port, announced as 127.0.0.1: the container's host name may
        # not resolve (network_mode none), and loopback is all a single node needs.
        cmd += ["--standalone", f"--local-addr={LOOPBACK_ADDR}"]
    else:
        raise ValueError(f"MILABOX_NNODES={nnodes} needs MILABOX_MASTER_ADDR (the address of node rank 0)")
    # A failed worker fails the run: torchrun stops the others and exits non-zero.
    return [*cmd, "--max-restarts=0", script, *args]


def launch_if_needed(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Re-execute the running script under torchrun when more than one process is wanted.

    Returns at once inside a torchrun worker (``LOCAL_RANK`` is set) or when one process on one node
    is all that is wanted; otherwise replaces this process with torchrun (never returns), so that
    torchrun's exit code is the container's.

    Args:
        argv: the script and its arguments (default ``sys.argv``).
        environ: the environment (default ``os.environ``); the workers inherit it.

    Raises:
        ValueError: a layout variable or the config's ``nproc`` is malformed.
        TypeError: MILABOX_CONFIG is not a JSON object.
        OSError: torchrun could not be executed.
    """
    env = dict(os.environ if environ is None else environ)
    if "LOCAL_RANK" in env:
        return
    nnodes = _int(env, "MILABOX_NNODES", 1, 1)
    nproc = nproc_per_node(env)
    if nnodes * nproc <= 1:
        return
    argv = list(sys.argv if argv is None else argv)
    if not env.get("MILABOX_MASTER_ADDR", "").strip():
        # Single node on loopback: gloo (CPU) would otherwise resolve the container's host name,
        # which a network_mode none container may not have.
        env.setdefault("GLOO_SOCKET_IFNAME", _LOOPBACK_IFNAME)
    cmd = torchrun_command(os.path.abspath(argv[0]), argv[1:], env, nproc=nproc)
    print(f"milabox_runtime: {nnodes} node(s) x {nproc} process(es): {' '.join(cmd[1:])}", flush=True)
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


def world(environ: Mapping[str, str] | None = None) -> tuple[int, int, int, int]:
    """This process' place as torchrun describes it; a single process outside torchrun.

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        (rank, world_size, local_rank, nnodes).

    Raises:
        ValueError: RANK, WORLD_SIZE, LOCAL_RANK or GROUP_WORLD_SIZE are malformed or inconsistent.
    """
    env = os.environ if environ is None else environ
    world_size = _int(env, "WORLD_SIZE", 1, 1)
    rank = _int(env, "RANK", 0, 0)
    local_rank = _int(env, "LOCAL_RANK", 0, 0)
    nnodes = _int(env, "GROUP_WORLD_SIZE", 1, 1)  # torchrun: the number of agents, one a node
    if rank >= world_size:
        raise ValueError(f"RANK={rank} must be below WORLD_SIZE={world_size}")
    return rank, world_size, local_rank, nnodes


def backend_for(kind: str, environ: Mapping[str, str] | None = None) -> str:
    """The collective backend: ``MILABOX_DIST_BACKEND`` if set, else gloo (cpu), nccl (cuda), xccl (xpu).

    Args:
        kind: the device type.
        environ: the environment (default ``os.environ``).

    Returns:
        The backend name torch.distributed knows.

    Raises:
        ValueError: an unknown device type or backend.
    """
    env = os.environ if environ is None else environ
    chosen = env.get("MILABOX_DIST_BACKEND", "").strip().lower()
    if chosen:
        if chosen not in BACKENDS.values():
            raise ValueError(f"MILABOX_DIST_BACKEND={chosen!r}: expected one of {', '.join(BACKENDS.values())}")
        return chosen
    if kind not in BACKENDS:
        raise ValueError(f"no collective backend for device type {kind!r}")
    return BACKENDS[kind]


def init_process_group(run: Any) -> tuple[int, int, int]:
    """Join this process to the job's process group, on its local rank's device.

    Outside torchrun (one process) the group has one member and needs no network (an in-memory
    store), so that a benchmark runs the same code (e.g. DistributedDataParallel) either way.

    Args:
        run: the entered :class:`milabox_runtime.Run` (its device type picks the backend).

    Returns:
        (rank, world_size, local_rank).

    Raises:
        ValueError: malformed torchrun variables, or a world size other than the Run's.
        RuntimeError: torch.distributed is unavailable or the rendezvous failed.
    """
    torch = _dev.import_torch(required=True)
    dist = torch.distributed
    if not dist.is_available():
        raise RuntimeError(f"this torch ({torch.__version__}) has no torch.distributed")
    rank, world_size, local_rank, _ = world()
    if world_size != getattr(run, "world_size", world_size):
        raise ValueError(f"WORLD_SIZE={world_size} but the run was made for {run.world_size} processes")
    backend = backend_for(run.device_type)
    device = run.device  # selects the local rank's accelerator (LOCAL_RANK) before the group forms
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank
    extra: dict[str, Any] = {}
    if device.type == "cuda":
        extra["device_id"] = device  # eager NCCL init bound to this device, no guessing later
    if "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **extra)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **extra)
    return rank, world_size, local_rank


def destroy_process_group() -> None:
    """Leave the process group, if one was joined (safe to call at any time)."""
    torch = _dev.import_torch()
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def agree_with_rank0(flag: bool, run: Any) -> bool:
    """Rank 0's value of ``flag`` on every rank (a broadcast), or ``flag`` itself without a process group.

    Decisions that end a loop of collectives (e.g. the ``max_seconds`` budget) must be the same on
    every rank, or one rank waits forever in a collective the others never join.

    Args:
        flag: this rank's value.
        run: the entered Run (its device holds the tensor for nccl/xccl).

    Returns:
        Rank 0's value.
    """
    torch = _dev.import_torch()
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return flag
    dist = torch.distributed
    if dist.get_world_size() == 1:
        return flag
    device = torch.device("cpu") if dist.get_backend() == "gloo" else run.device
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
