"""Multi-node runs: the layout from --nodes, each node's container request, and two containers on this one
machine acting as two nodes that train one DDP model together (gloo, host networking) and report one rate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from slurm_fixture import slurm_cluster  # noqa: F401 (a fixture

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.engine import ContainerRequest, Exit
from milabox.errors import ConfigError
from milabox.execution import multinode as mn
from milabox.execution.plan import Attempt
from milabox.execution.requests import container_request
from milabox.images.build import build
from milabox.images.naming import benchmark_tag
from milabox.images.sources import discover
from milabox.reporting.summary import summarize
from milabox.rundir.read import load_run

MILABOX = [sys.executable, "-m", "milabox"]
CPU = get_vendor("cpu")

# Two processes in all (one a node), a linear model: the test is about the rendezvous, not the model.
DDP_MAIN = '''\
"""A tiny DDP training across every process of the job (the multi-node smoke benchmark of the tests)."""
import milabox_runtime as mr


def bench(run):
    import torch
    from torch.nn.parallel import DistributedDataParallel

    rank, world, _ = mr.distributed.init_process_group(run)
    try:
        run.seed(0)  # the same initial weights on every rank
        model = DistributedDataParallel(torch.nn.Linear(16, 4))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        run.seed(1 + rank)  # each rank its own data
        x, y = torch.randn(8, 16), torch.randn(8, 4)
        for _ in run.steps(items=8 * world):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # DDP all-reduces the gradients across the two containers here
            optimizer.step()
            run.loss(loss)
        weights = [float(p.detach().sum()) for p in model.parameters()]
        run.emit("ddp", world_size=world, weights=weights)
    finally:
        mr.distributed.destroy_process_group()


if __name__ == "__main__":
    mr.distributed.launch_if_needed()
    mr.main(bench)
'''
DDP_TOML = '''\
description = "planted two-node DDP smoke"
family = "test"
unit = "items/s"
plan = "all_devices"
[sizes.smoke]
warmup = 1
steps = 5
timeout_s = 180
[sizes.full]
warmup = 1
steps = 5
timeout_s = 180
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the layout and the request (no engine) ------------------------------------------------------------------


def test_nodes_option_gives_the_layout():
    spec = mn.parse_nodes("gpu1, gpu2,gpu3", 2, 31000)
    assert spec.nodes == ("gpu1", "gpu2", "gpu3") and spec.nnodes == 3 and spec.master == "gpu1"
    assert spec.node_rank == 2 and spec.is_worker and spec.master_port == 31000
    assert mn.parse_nodes("10.0.0.1,10.0.0.2", 0).master_port == mn.DEFAULT_MASTER_PORT


@pytest.mark.parametrize(("nodes", "rank", "port", "message"), [
    ("a,,b", 0, None, "--nodes: '' is not a host name"),
    ("a b,c", 0, None, "--nodes: 'a b' is not a host name"),
    ("a,b", None, None, "--node-rank is missing"),
    ("a,b", 2, None, "--node-rank: 2 is not an index of the 2 node(s) of --nodes; valid: 0-1"),
    ("a,b", 0, 70000, "--master-port: 70000 is not a port number"),
])
def test_bad_layout_is_one_clear_error(nodes, rank, port, message):
    with pytest.raises(ConfigError) as err:
        mn.parse_nodes(nodes, rank, port)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_command_line_keeps_only_benchmarks_that_span_nodes(benchmarks_copy):
    (benchmarks_copy / "ddpsmoke").mkdir()
    (benchmarks_copy / "ddpsmoke" / "main.py").write_text(DDP_MAIN)
    (benchmarks_copy / "ddpsmoke" / "benchmark.toml").write_text(DDP_TOML)
    benches = select(["ddpsmoke", "matmul-fp32"], all_benchmarks())
    skipped = []
    spec, kept = mn.command_line("h1,h2", 1, None, benches, lambda b, why: skipped.append((b.name, why)))
    assert [b.name for b in kept] == ["ddpsmoke"] and spec.node_rank == 1
    assert skipped == [("matmul-fp32", "plan per_device: runs on one node's devices, not across nodes")]
    assert mn.command_line(None, None, None, benches, print) == (None, benches)
    with pytest.raises(ConfigError, match="none of the selected benchmarks spans nodes"):
        mn.command_line("h1,h2", 0, None, benches[1:], print)
    with pytest.raises(ConfigError, match="--node-rank and --master-port need --nodes"):
        mn.command_line(None, 1, None, benches, print)


def test_node_request_adds_host_networking_and_the_rendezvous(tmp_path):
    bench = all_benchmarks()["matmul-fp32"]
    base = container_request(Attempt(bench, 0, ()), CPU, "img", tmp_path, "smoke")
    assert base.network_mode == "none"
    spec = mn.parse_nodes("node-a,node-b", 1, 29600)
    request = mn.node_request(base, spec, CPU, ())
    assert request.network_mode == "host"
    assert {k: v for k, v in request.environment.items() if k.startswith("MILABOX_") and k not in base.environment} \
        == {"MILABOX_NNODES": "2", "MILABOX_NODE_RANK": "1", "MILABOX_MASTER_ADDR": "node-a",
            "MILABOX_MASTER_PORT": "29600", "MILABOX_NPROC_PER_NODE": "1", "MILABOX_DIST_BACKEND": "gloo"}
    assert request.mounts == base.mounts and request.image == base.image and request.labels["milabox.node_rank"] == "1"


def test_gpu_vendors_use_their_collectives_and_one_process_a_device(tmp_path):
    assert [mn.backend(get_vendor(v)) for v in ("cpu", "cuda", "rocm", "xpu")] == ["gloo", "nccl", "nccl", "xccl"]
    spec = mn.parse_nodes("a,b", 0)
    cuda = get_vendor("cuda")
    assert mn.nproc_per_node(spec, cuda, ("0", "1", "2")) == 3
    assert mn.nproc_per_node(spec, cuda, (), {"SLURM_GPUS_ON_NODE": "8"}) == 8
    request = mn.node_request(ContainerRequest(image="x"), spec, get_vendor("xpu"), ("0", "1"))
    assert request.environment["MILABOX_NPROC_PER_NODE"] == "2" and request.environment["MILABOX_DIST_BACKEND"] == "xccl"


def test_only_node_rank_0_needs_a_rate():
    worker, master = mn.parse_nodes("a,b", 1), mn.parse_nodes("a,b", 0)
    no_rate = ("failed", "no rate reported (the benchmark exited 0 without a positive measured rate)", None)
    assert mn.judge(worker, Exit(code=0), *no_rate) == ("ok", None, None)
    assert mn.judge(master, Exit(code=0), *no_rate) == no_rate
    crashed = ("failed", "exit code 1: RuntimeError: gloo connect timed out", None)
    assert mn.judge(worker, Exit(code=1), *crashed) == crashed
    assert mn.judge(worker, Exit(code=None, timed_out=True), "failed", "timed out after 5 s (killed)", None)[0] \
        == "failed"


# --- two containers, two "nodes", one DDP model ---------------------------------------------------------------


class _Quiet:
    def begin(self, image, log_path): ...
    def step(self, image, step, steps, instruction): ...
    def line(self, image, text): ...
    def end(self, result): ...


@pytest.fixture
def ddp_benchmark(engine, benchmarks_copy, tmp_path):
    """The planted DDP benchmark, built on the CPU runtime image; its image is removed afterwards."""
    (benchmarks_copy / "ddpsmoke").mkdir()
    (benchmarks_copy / "ddpsmoke" / "main.py").write_text(DDP_MAIN)
    (benchmarks_copy / "ddpsmoke" / "benchmark.toml").write_text(DDP_TOML)
    build(engine, select(["ddpsmoke"], all_benchmarks()), CPU, discover(), _Quiet(), tmp_path / "logs")
    yield benchmarks_copy
    engine.remove_image(benchmark_tag("ddpsmoke", CPU))


@pytest.mark.engine
def test_two_containers_as_two_nodes_train_one_ddp_model_and_report_one_rate(engine, ddp_benchmark, tmp_path):
    port = _free_port()
    env = {**os.environ, "MILABOX_SUITE": str(ddp_benchmark)}
    nodes = ["--nodes", "127.0.0.1,127.0.0.1", "--master-port", str(port)]
    procs = [subprocess.Popen([*MILABOX, "run", "ddpsmoke", *nodes, "--node-rank", str(rank),
                               "--run-dir", str(tmp_path / f"node{rank}")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (1, 0)]  # the worker first: it waits
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    master, worker = (load_run(tmp_path / f"node{rank}") for rank in (0, 1))
    record = master.attempts[0].record.raw
    assert record["status"] == "ok" and record["rate"] > 0
    assert record["multinode"] == {"nodes": ["127.0.0.1", "127.0.0.1"], "nnodes": 2, "node_rank": 0,
                                   "master_addr": "127.0.0.1", "master_port": port}
    request = record["container_request"]
    assert request["network_mode"] == "host" and request["environment"]["MILABOX_NODE_RANK"] == "0"
    events = master.attempts[0].events
    ddp = next(e for e in events if e.kind == "ddp")
    assert ddp.data["world_size"] == 2  # one process in each container: they formed one group
    assert next(e for e in events if e.kind == "summary").data["items"] == 5 * 8 * 2

    # The other node trained too (its container ran the same steps) but wrote no events: one rate in all.
    other = worker.attempts[0]
    assert other.record.status == "ok" and other.record.raw["rate"] is None and other.events == []
    assert other.record.raw["container_request"]["environment"]["MILABOX_NODE_RANK"] == "1"
    assert "--node-rank=1" in other.log_path.read_text()
    assert "the rate is in node rank 0's (127.0.0.1) run folder" in outs[0][1]

    rows = summarize(master).benchmarks
    assert [(r.name, r.n, r.fail) for r in rows] == [("ddpsmoke", 1, 0)] and rows[0].perf == record["rate"]
    assert "ddpsmoke" in outs[1][0]  # node rank 0 prints the report
    assert engine.containers("milabox.benchmark=ddpsmoke") == []  # both containers are gone
    assert json.loads((tmp_path / "node0" / "manifest.json").read_text())["status"] == "complete"


def test_run_options_reject_node_rank_without_nodes(tmp_path):
    proc = subprocess.run([*MILABOX, "run", "matmul-fp32", "--node-rank", "1", "--run-dir", str(tmp_path / "r")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and not (tmp_path / "r").exists()
    assert proc.stderr.strip() == "milabox: error: --node-rank and --master-port need --nodes (the hosts of the " \
                                  "multi-node run)"


@pytest.mark.engine
def test_slurm_tasks_of_a_two_node_job_join_one_ddp_run(engine, ddp_benchmark, slurm_cluster, tmp_path):  # noqa: F811
    """What a docker-runtime job's `srun` starts on each of two nodes: `milabox slurm run-job` with that task's
    Slurm variables. One slurmd cannot give two nodes, so the two tasks are started here, on this host, with the
    variables srun gives them; the layout itself comes from Slurm (`scontrol show hostnames`)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"format": 1, "benchmarks": ["ddpsmoke"], "status": "running"}))
    node = slurm_cluster.node  # resolves to this host, so both containers meet at node rank 0's address
    job = {**slurm_cluster.env, "MILABOX_SUITE": str(ddp_benchmark), "SLURM_JOB_ID": "7", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": f"{node},{node}", "MILABOX_MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen([*MILABOX, "slurm", "run-job", "ddpsmoke", "--run-dir", str(run_dir)],
                              env={**job, "SLURM_NODEID": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for rank in (1, 0)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    run = load_run(run_dir)  # the shared run folder holds node rank 0's attempt only: one rate
    assert [a.path.relative_to(run_dir).as_posix() for a in run.attempts] == ["ddpsmoke/r0-dall"]
    record = run.attempts[0].record.raw
    assert record["status"] == "ok" and record["rate"] > 0 and record["slurm"]["job_id"] == "7"
    assert record["multinode"]["nodes"] == [node, node] and record["multinode"]["master_addr"] == node
    assert next(e for e in run.attempts[0].events if e.kind == "ddp").data["world_size"] == 2
    worker = json.loads((run_dir / ".nodes" / "node1" / "ddpsmoke" / "r0-dall" / "record.json").read_text())
    assert worker["status"] == "ok" and worker["rate"] is None and worker["multinode"]["node_rank"] == 1
    assert engine.containers("milabox.benchmark=ddpsmoke") == []
