"""Slurm: sbatch scripts pinned by golden files, gathering rules on real files, and jobs through a real
one-node Slurm (munged, slurmctld, slurmd from Debian's packages, started by the ``slurm_cluster`` fixture)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest
from helpers import CPU, MILABOX, planted_toml

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.errors import ConfigError
from milabox.execution import multinode as mn
from milabox.images.build import build
from milabox.images.naming import benchmark_tag
from milabox.images.sources import discover
from milabox.rundir.read import load_run

# --- a real Slurm ---------------------------------------------------------------------------------------------

def _submit(cluster, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*MILABOX, "slurm", "submit", *args, "--partition", cluster.partition, "--poll-interval",
                           "1"], env={**cluster.env, **kwargs.pop("env", {})}, capture_output=True, text=True,
                          timeout=600, check=False, **kwargs)


@pytest.mark.engine
def test_smoke_benchmark_runs_through_slurm_into_one_run_folder(engine, slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = _submit(slurm_cluster, "matmul-fp32", "--run-dir", str(run_dir), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    for state in ("RUNNING", "COMPLETED, exit code 0"):  # progress, as the states changed
        assert re.search(rf"\[slurm\] matmul-fp32: job \d+ {state} \(\d+s elapsed\)", proc.stderr), proc.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    job = manifest["slurm"]["jobs"]["matmul-fp32"]
    assert manifest["status"] == "complete" and manifest["ended"] and job["state"] == "COMPLETED"
    assert job["job_id"].isdigit() and (run_dir / ".slurm" / f"matmul-fp32-{job['job_id']}.out").is_file()
    assert manifest["images"]["matmul"]["id"] == engine.image(benchmark_tag("matmul", CPU)).id

    attempt = load_run(run_dir).attempts[0]  # the job wrote its attempt into the shared run folder
    assert attempt.path == run_dir / "matmul-fp32" / "r0-dall" and attempt.record.status == "ok"
    assert attempt.record.raw["slurm"] == {"job_id": job["job_id"], "node": slurm_cluster.node, "runtime": "docker",
                                           "state": "COMPLETED"}
    assert attempt.rate and attempt.rate > 0
    report = json.loads(proc.stdout)
    assert [(b["name"], b["n"], b["fail"]) for b in report["benchmarks"]] == [("matmul-fp32", 1, 0)]
    again = subprocess.run([*MILABOX, "report", str(run_dir), "--format", "json"], capture_output=True, text=True,
                           timeout=120, check=False)
    assert again.returncode == 0 and json.loads(again.stdout)["benchmarks"][0]["perf"] == pytest.approx(attempt.rate)


@pytest.mark.engine
def test_a_job_that_dies_before_the_benchmark_is_a_failed_row(slurm_cluster, tmp_path):
    # This host has no apptainer: the job fails at its first command, for real, and the row says so.
    run_dir = tmp_path / "run"
    proc = _submit(slurm_cluster, "matmul-fp32", "--runtime", "apptainer", "--run-dir", str(run_dir), "--no-wait")
    assert proc.returncode == 0, proc.stderr
    assert f"gather the results with `milabox slurm collect {run_dir}`" in proc.stderr
    collected = subprocess.run([*MILABOX, "slurm", "collect", str(run_dir), "--poll-interval", "1"],
                               env=slurm_cluster.env, capture_output=True, text=True, timeout=300, check=False)
    assert collected.returncode == 1, collected.stderr  # some attempts failed
    record = load_run(run_dir).attempts[0].record
    job_id = record.raw["slurm"]["job_id"]
    assert record.status == "failed" and record.raw["slurm"]["state"] == "FAILED"
    assert record.cause.startswith(f"slurm job {job_id} ended FAILED (exit code 127) before the benchmark ran; "
                                   f".slurm/matmul-fp32-{job_id}.out: ")
    assert "apptainer: command not found" in record.cause
    assert "matmul-fp32" in collected.stdout and "100.0% (1 of 1 attempts)" in collected.stdout


@pytest.mark.engine
def test_a_script_sbatch_refuses_is_a_failed_row(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([*MILABOX, "slurm", "submit", "matmul-fp32", "--partition", "nosuch", "--run-dir",
                           str(run_dir), "--poll-interval", "1"], env=slurm_cluster.env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr  # some attempts failed
    record = load_run(run_dir).attempts[0].record
    assert record.status == "failed" and record.raw["slurm"]["state"] == "NOT_SUBMITTED"
    assert record.cause == "sbatch refused matmul-fp32.sbatch: sbatch: error: Batch job submission failed: " \
                           "Invalid partition name specified"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["slurm"]["jobs"]["matmul-fp32"]["job_id"] is None


@pytest.mark.engine
def test_slurm_variables_give_the_multinode_layout(slurm_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))  # scontrol reads the node list's syntax from it
    node = slurm_cluster.node
    spec = mn.from_slurm({"SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": f"{node},{node}",
                          "SLURM_JOB_ID": "20077"})
    assert spec.nodes == (node, node) and spec.node_rank == 1 and spec.master == node and spec.master_port == 20077
    spec = mn.from_slurm({"SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": node,
                          "MILABOX_MASTER_ADDR": "10.1.2.3", "MILABOX_MASTER_PORT": "31000"})
    assert spec.master == "10.1.2.3" and spec.master_port == 31000
    assert mn.from_slurm({}) is None
    with pytest.raises(ConfigError, match="names 1 host"):
        mn.from_slurm({"SLURM_NNODES": "2", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": node})


HANG_TOML = planted_toml("planted: sleeps until stopped", {"timeout_s": 300})


@pytest.fixture
def hang_benchmark(engine, benchmarks_copy, tmp_path):
    (benchmarks_copy / "slurmhang").mkdir()
    (benchmarks_copy / "slurmhang" / "main.py").write_text("import time\nprint('sleeping', flush=True)\n"
                                                           "time.sleep(3600)\n")
    (benchmarks_copy / "slurmhang" / "benchmark.toml").write_text(HANG_TOML)

    class Quiet:
        def begin(self, *a): ...
        def step(self, *a): ...
        def line(self, *a): ...
        def end(self, *a): ...

    build(engine, select(["slurmhang"], all_benchmarks()), CPU, discover(), Quiet(), tmp_path / "logs")
    yield benchmarks_copy
    engine.remove_image(benchmark_tag("slurmhang", CPU))


@pytest.mark.engine
def test_ctrl_c_cancels_the_jobs_and_keeps_every_row(engine, slurm_cluster, hang_benchmark, tmp_path):
    run_dir = tmp_path / "run"
    env = {**slurm_cluster.env, "MILABOX_SUITE": str(hang_benchmark)}
    proc = subprocess.Popen([*MILABOX, "slurm", "submit", "slurmhang", "--run-dir", str(run_dir), "--poll-interval",
                             "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    log = run_dir / "slurmhang" / "r0-dall" / "container.log"
    while time.monotonic() < deadline and not (log.exists() and "sleeping" in log.read_text()):
        time.sleep(0.5)  # the container is up once it has said so
    assert log.exists() and "sleeping" in log.read_text(), proc.stderr.read() if proc.poll() is not None else ""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["slurm"]["jobs"]["slurmhang"]["state"] == "CANCELLED"
    record = load_run(run_dir).attempts[0].record
    assert record.status in ("failed", "interrupted") and record.raw["slurm"]["state"] == "CANCELLED"
    assert engine.containers("milabox.benchmark=slurmhang") == []  # scancel stopped run-job, which removed it
    assert "slurmhang" in out
