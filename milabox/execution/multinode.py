"""Benchmarks that span nodes: one container per node, joined by torchrun's rendezvous over the host network.

Every node runs the same benchmark at the same time. Each node's container gets host networking (the
rendezvous and the collectives need the nodes' real addresses) and five variables that the in-container
runtime (``milabox_runtime.distributed``) turns into torchrun's rendezvous: ``MILABOX_NNODES``,
``MILABOX_NODE_RANK``, ``MILABOX_MASTER_ADDR``, ``MILABOX_MASTER_PORT`` and ``MILABOX_NPROC_PER_NODE``
(plus ``MILABOX_DIST_BACKEND``: nccl on NVIDIA and AMD GPUs — RCCL answers to that name — xccl on Intel
GPUs, gloo on CPUs). Only global rank 0 writes events, so only node rank 0 reports a rate; the other
nodes' attempts succeed when their container exits cleanly.

The layout comes from ``milabox run --nodes host1,host2 --node-rank K`` (:func:`parse_nodes`) or from
Slurm's variables inside a job (:func:`from_slurm`).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.engine import ContainerRequest, Exit
from milabox.errors import ConfigError

DEFAULT_MASTER_PORT = 29500
#: Under Slurm the port is derived from the job id, so two multi-node jobs sharing a node do not collide.
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000
#: The plan of benchmarks that span every device, hence every node.
SPANNING_PLAN = "all_devices"
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:_-]*[A-Za-z0-9])?$")
#: Where the host's RDMA (InfiniBand, RoCE) device nodes are: uverbsN, rdma_cm, umadN.
RDMA_DIR = "/dev/infiniband"


@dataclass(frozen=True)
class NodeSpec:
    """Where this node sits in a multi-node run.

    Attributes:
        nodes: host names or addresses of every node, node rank 0 first.
        node_rank: this node's index in ``nodes``.
        master_port: the TCP port node rank 0 listens on for the rendezvous.
        master_addr: the rendezvous address; empty means ``nodes[0]``.
        nproc_per_node: processes (devices) each node runs; None: one per device of the attempt (see
            :func:`nproc_per_node`).
    """

    nodes: tuple[str, ...]
    node_rank: int
    master_port: int = DEFAULT_MASTER_PORT
    master_addr: str = ""
    nproc_per_node: int | None = None

    @property
    def nnodes(self) -> int:
        """How many nodes take part."""
        return len(self.nodes)

    @property
    def master(self) -> str:
        """The rendezvous address (node rank 0)."""
        return self.master_addr or self.nodes[0]

    @property
    def is_worker(self) -> bool:
        """True on every node but node rank 0 (whose global rank 0 writes the events)."""
        return self.node_rank > 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description, recorded in each attempt's record.json as ``multinode``."""
        return {"nodes": list(self.nodes), "nnodes": self.nnodes, "node_rank": self.node_rank,
                "master_addr": self.master, "master_port": self.master_port}


def _port(value: object, what: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a port number; expected an integer 1-65535") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what}: {port} is not a port number; expected an integer 1-65535")
    return port


def parse_nodes(text: str, node_rank: int | None, master_port: int | None = None) -> NodeSpec:
    """The layout given on the command line: ``--nodes host1,host2 --node-rank K [--master-port P]``.

    Args:
        text: comma-separated host names or addresses, node rank 0 (the rendezvous host) first. The same
            address may repeat (several "nodes" on one machine, as the tests do).
        node_rank: this node's index in the list.
        master_port: rendezvous port (default 29500).

    Returns:
        The node's spec.

    Raises:
        ConfigError: a host name is empty or malformed, the rank is missing or out of range, or the port is
            invalid (the message names the option).
    """
    nodes = tuple(h.strip() for h in text.split(","))
    for host in nodes:
        if not _HOST.match(host):
            raise ConfigError(f"--nodes: {host!r} is not a host name or address; expected e.g. node1,node2")
    if node_rank is None:
        raise ConfigError("--node-rank is missing; with --nodes each node says its index in the list (0 first)")
    if not 0 <= node_rank < len(nodes):
        raise ConfigError(f"--node-rank: {node_rank} is not an index of the {len(nodes)} node(s) of --nodes; "
                          f"valid: 0-{len(nodes) - 1}")
    port = DEFAULT_MASTER_PORT if master_port is None else _port(master_port, "--master-port")
    return NodeSpec(nodes=nodes, node_rank=node_rank, master_port=port)


def slurm_hostnames(nodelist: str, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    """Expand a Slurm node list (``node[1-3],gpu7``) with ``scontrol show hostnames``.

    Raises:
        ConfigError: scontrol is missing or refuses the list.
    """
    try:
        proc = run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30,
                   check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: `scontrol show hostnames` failed ({e})") from None
    hosts = proc.stdout.split()
    if proc.returncode != 0 or not hosts:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: `scontrol show hostnames` answered "
                          f"{(proc.stderr or proc.stdout).strip()[:200]!r}")
    return hosts


def slurm_port(job_id: str) -> int:
    """The rendezvous port of a Slurm job: 20000 + job id mod 20000 (what the sbatch templates compute too)."""
    return SLURM_PORT_BASE + int(job_id) % SLURM_PORT_SPAN


def from_slurm(environ: Mapping[str, str] | None = None,
               run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> NodeSpec | None:
    """The layout of the Slurm job step this process runs in (one task per node), or None outside Slurm.

    Uses ``SLURM_NNODES``, ``SLURM_NODEID`` and the first host of ``SLURM_JOB_NODELIST``; the job script's
    ``MILABOX_MASTER_ADDR`` / ``MILABOX_MASTER_PORT`` win when set.

    Args:
        environ: the environment (default ``os.environ``).
        run: runs ``scontrol`` (replaceable for tests of the parsing alone).

    Returns:
        The spec, or None when ``SLURM_NNODES`` is unset.

    Raises:
        ConfigError: a Slurm variable is missing or malformed.
    """
    env = os.environ if environ is None else environ
    if not env.get("SLURM_NNODES"):
        return None
    try:
        nnodes, rank = int(env["SLURM_NNODES"]), int(env.get("SLURM_NODEID", ""))
    except ValueError:
        raise ConfigError(f"SLURM_NNODES={env.get('SLURM_NNODES')!r} / SLURM_NODEID={env.get('SLURM_NODEID')!r}: "
                          "expected integers; run the benchmark as one srun task per node") from None
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    hosts = slurm_hostnames(nodelist, run) if nodelist else []
    if len(hosts) != nnodes:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r} names {len(hosts)} host(s) but SLURM_NNODES is {nnodes}")
    if "MILABOX_MASTER_PORT" in env:
        port = _port(env["MILABOX_MASTER_PORT"], "MILABOX_MASTER_PORT")
    elif env.get("SLURM_JOB_ID", "").isdigit():
        port = slurm_port(env["SLURM_JOB_ID"])
    else:
        port = DEFAULT_MASTER_PORT
    return NodeSpec(nodes=tuple(hosts), node_rank=rank, master_port=port,
                    master_addr=env.get("MILABOX_MASTER_ADDR", ""))


def backend(vendor: Vendor) -> str:
    """The collective backend of a vendor (its data file's ``collective_backend``)."""
    return vendor.collective_backend


def local_gpu_count(vendor: Vendor) -> int:
    """Devices of this host as the vendor's passthrough sees them (no driver call: device nodes only).

    Args:
        vendor: the vendor (its ``device_discovery``).

    Returns:
        How many devices its discovery finds; 0 for ``none`` or a host without them.
    """
    if vendor.device_discovery == "nvidia":
        return len([p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)])
    if vendor.device_discovery == "kfd":
        nodes = glob.glob("/sys/class/kfd/kfd/topology/nodes/*/gpu_id")
        return sum(1 for n in nodes if Path(n).read_text().strip() not in ("", "0"))
    if vendor.device_discovery == "dri":
        return len(glob.glob("/dev/dri/renderD*"))
    return 0


def nproc_per_node(spec: NodeSpec, vendor: Vendor, devices: Sequence[str],
                   environ: Mapping[str, str] | None = None) -> int:
    """Processes each node starts: the spec's, else the attempt's devices, else Slurm's GPUs, else this host's.

    A CPU node runs one process (gloo over all its cores): a vendor selecting ``none`` or ``cpuset`` core sets.
    """
    env = os.environ if environ is None else environ
    if spec.nproc_per_node:
        return spec.nproc_per_node
    if vendor.device_selection in ("none", "cpuset"):
        return 1
    if devices:
        return len(devices)
    gpus = env.get("SLURM_GPUS_ON_NODE", "")
    if gpus.isdigit() and int(gpus) > 0:
        return int(gpus)
    return max(1, local_gpu_count(vendor))


def rdma_devices(folder: str = RDMA_DIR) -> tuple[str, ...]:
    """The host's RDMA device nodes, e.g. ``/dev/infiniband/uverbs0`` and ``/dev/infiniband/rdma_cm``.

    Args:
        folder: where to look (default ``/dev/infiniband``).

    Returns:
        Their paths, sorted; empty on a host without RDMA.
    """
    try:
        return tuple(sorted(str(p) for p in Path(folder).iterdir() if not p.is_dir()))
    except OSError:
        return ()


def node_request(request: ContainerRequest, spec: NodeSpec, vendor: Vendor,
                 devices: Sequence[str] = (), environ: Mapping[str, str] | None = None,
                 rdma: Callable[[], Sequence[str]] = rdma_devices) -> ContainerRequest:
    """Turn a single-node container request (``run.container_request``) into this node's part of a multi-node run.

    Args:
        request: the attempt's request.
        spec: the layout and this node's rank.
        vendor: the vendor (collective backend, device count).
        devices: the attempt's devices.
        environ: where Slurm's variables are read (default ``os.environ``).
        rdma: lists the host's RDMA device nodes (default :func:`rdma_devices`; replaceable for tests).

    Returns:
        The same request with host networking and the rendezvous variables; where the host has RDMA devices,
        also every one of them, ``IPC_LOCK`` and an unlimited ``memlock``.
    """
    env = {**request.environment,
           "MILABOX_NNODES": str(spec.nnodes), "MILABOX_NODE_RANK": str(spec.node_rank),
           "MILABOX_MASTER_ADDR": spec.master, "MILABOX_MASTER_PORT": str(spec.master_port),
           "MILABOX_NPROC_PER_NODE": str(nproc_per_node(spec, vendor, devices, environ)),
           "MILABOX_DIST_BACKEND": backend(vendor)}
    labels = {**request.labels, "milabox.node_rank": str(spec.node_rank)}
    # Host networking: the rendezvous and the collectives need every node's real address.
    request = dataclasses.replace(request, network_mode="host", environment=env, labels=labels)
    nodes = [d for d in rdma() if d not in request.devices]
    if not nodes:
        return request
    # Without the verbs devices NCCL/RCCL log "NET/IB : No device found" and fall back to TCP sockets. Registering
    # memory for RDMA pins it: NCCL's troubleshooting guide ("Runtime and MPI issues", Docker) asks containers for
    # `--ulimit memlock=-1`, and IPC_LOCK lets the process lock memory past any limit (capabilities(7)).
    return dataclasses.replace(request, devices=(*request.devices, *nodes),
                               cap_add=tuple(dict.fromkeys((*request.cap_add, "IPC_LOCK"))),
                               ulimits=(*(u for u in request.ulimits if u[0] != "memlock"), ("memlock", -1, -1)))


def judge(spec: NodeSpec, exit: Exit, status: str, cause: str | None,
          rate: float | None) -> tuple[str, str | None, float | None]:
    """An attempt's outcome on this node: node rank 0 as usual; the others succeed on a clean exit with no rate.

    Args:
        spec: the layout.
        exit: how this node's container ended.
        status, cause, rate: what ``run.classify`` said.

    Returns:
        (status, cause, rate).
    """
    if spec.is_worker and status == "failed" and rate is None and exit.code == 0 and not exit.timed_out \
            and not exit.oom_killed:
        return "ok", None, None  # only global rank 0 writes events: node rank 0's record holds the rate
    return status, cause, rate


def spanning(benchmarks: Sequence[Benchmark]) -> tuple[list[Benchmark], list[Benchmark]]:
    """Split a selection into benchmarks that span nodes (plan ``all_devices``) and the others.

    Returns:
        (spanning, per-device ones), each in the given order.
    """
    return ([b for b in benchmarks if b.plan == SPANNING_PLAN], [b for b in benchmarks if b.plan != SPANNING_PLAN])


def command_line(nodes: str | None, node_rank: int | None, master_port: int | None,
                 benchmarks: Sequence[Benchmark],
                 on_skip: Callable[[Benchmark, str], None]) -> tuple[NodeSpec | None, list[Benchmark]]:
    """What ``milabox run --nodes ... --node-rank K [--master-port P]`` runs on this node.

    Args:
        nodes: the ``--nodes`` value, or None for a single-node run.
        node_rank: ``--node-rank``.
        master_port: ``--master-port``.
        benchmarks: the selection.
        on_skip: told about each benchmark left out (per-device ones do not span nodes).

    Returns:
        (the node's spec or None, the benchmarks to run).

    Raises:
        ConfigError: ``--node-rank``/``--master-port`` without ``--nodes``, a bad layout, or nothing in the
            selection spans nodes.
    """
    if nodes is None:
        if node_rank is not None or master_port is not None:
            raise ConfigError("--node-rank and --master-port need --nodes (the hosts of the multi-node run)")
        return None, list(benchmarks)
    spec = parse_nodes(nodes, node_rank, master_port)
    spans, others = spanning(benchmarks)
    for bench in others:
        on_skip(bench, f"plan {bench.plan}: runs on one node's devices, not across nodes")
    if not spans:
        raise ConfigError(f"--nodes: none of the selected benchmarks spans nodes (plan {SPANNING_PLAN}); "
                          f"selected: {', '.join(b.name for b in benchmarks)}")
    return spec, spans
