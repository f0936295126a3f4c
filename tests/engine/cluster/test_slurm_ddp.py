"""Multi-node runs: the layout from --nodes, each node's container request, and two containers on this one
machine acting as two nodes that train one DDP model together (gloo, host networking) and report one rate."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import MILABOX, _free_port

from milabox.rundir.read import load_run


@pytest.mark.engine
def test_slurm_tasks_of_a_two_node_job_join_one_ddp_run(engine, ddp_benchmark, slurm_cluster, tmp_path):
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
