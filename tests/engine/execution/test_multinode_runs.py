"""Multi-node runs: the layout from --nodes, each node's container request, and two containers on this one
machine acting as two nodes that train one DDP model together (gloo, host networking) and report one rate."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import MILABOX, _free_port

from milabox.reporting.summary import summarize
from milabox.rundir.read import load_run


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
