"""Multi-node runs: the layout from --nodes, each node's container request, and two containers on this one
machine acting as two nodes that train one DDP model together (gloo, host networking) and report one rate."""

from __future__ import annotations

import subprocess

import pytest
from helpers import CPU, DDP_MAIN, DDP_TOML, MILABOX

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.engine import ContainerRequest, Exit
from milabox.errors import ConfigError
from milabox.execution import multinode as mn
from milabox.execution.plan import Attempt
from milabox.execution.requests import container_request

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


def test_node_request_passes_rdma_where_the_host_has_it_fake_listing(tmp_path):
    cuda = get_vendor("cuda")
    spec = mn.parse_nodes("a,b", 0)
    fake = ("/dev/infiniband/rdma_cm", "/dev/infiniband/uverbs0", "/dev/infiniband/uverbs1")  # FAKE: no IB here
    base = ContainerRequest(image="x", devices=("/dev/kfd",), cap_add=("SYS_PTRACE",))
    request = mn.node_request(base, spec, cuda, (), rdma=lambda: fake)
    assert request.devices == ("/dev/kfd", *fake)
    assert request.cap_add == ("SYS_PTRACE", "IPC_LOCK") and request.ulimits == (("memlock", -1, -1),)
    line = request.docker_run_command()
    assert "--cap-add IPC_LOCK" in line and "--ulimit memlock=-1:-1" in line and "--device /dev/infiniband/uverbs1" in line
    plain = mn.node_request(base, spec, cuda, (), rdma=lambda: ())
    assert plain.devices == ("/dev/kfd",) and plain.cap_add == ("SYS_PTRACE",) and plain.ulimits == ()


def test_rdma_devices_lists_device_nodes_and_nothing_without_the_folder(tmp_path):
    (tmp_path / "uverbs0").touch()
    (tmp_path / "rdma_cm").touch()
    (tmp_path / "by-path").mkdir()
    assert mn.rdma_devices(str(tmp_path)) == (str(tmp_path / "rdma_cm"), str(tmp_path / "uverbs0"))
    assert mn.rdma_devices(str(tmp_path / "missing")) == ()


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


def test_run_options_reject_node_rank_without_nodes(tmp_path):
    proc = subprocess.run([*MILABOX, "run", "matmul-fp32", "--node-rank", "1", "--run-dir", str(tmp_path / "r")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and not (tmp_path / "r").exists()
    assert proc.stderr.strip() == "milabox: error: --node-rank and --master-port need --nodes (the hosts of the " \
                                  "multi-node run)"
