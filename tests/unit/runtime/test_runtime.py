"""Unit tests of milabox_runtime, run on the host without Docker (pure-Python workloads)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import PROJECT as ROOT

import milabox_runtime as mr


def make_run(tmp_path: Path, **config) -> mr.Run:
    return mr.Run(config={"benchmark": "t", "size": "smoke", **config}, results_dir=tmp_path, device="cpu")


def read_events(folder: Path) -> list[dict]:
    lines = (folder / mr.EVENTS_NAME).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def kinds(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event"] == kind]


def sleepy(run: mr.Run, seconds: float = 0.01, items: float = 2) -> list[int]:
    seen = []
    for step in run.steps(items=items):
        seen.append(step)
        time.sleep(seconds)
    return seen


def test_events_written_and_parseable(tmp_path):
    with make_run(tmp_path, warmup=1, steps=3, precision="fp32") as run:
        sleepy(run)
    events = read_events(tmp_path)
    assert [e["event"] for e in events[:2]] == ["start", "meta"]
    assert [e["event"] for e in events[-3:]] == ["memory", "summary", "end"]
    assert all(isinstance(e["time"], float) for e in events)
    assert events == sorted(events, key=lambda e: e["time"])
    start, meta = events[0], events[1]
    assert (start["benchmark"], start["size"], start["pid"]) == ("t", "smoke", os.getpid())
    assert meta["device"]["type"] == "cpu" and meta["device"]["count"] == 1
    assert meta["precision"] == "fp32" and meta["python"].count(".") == 2
    assert meta["threads"] >= 1 and meta["hostname"]
    assert kinds(events, "memory")[0]["peak_mb"] > 1  # peak RSS of a Python process
    assert events[-1] == {"event": "end", "time": events[-1]["time"], "status": "ok", "error": None}


def test_events_are_flushed_as_they_happen(tmp_path):
    with make_run(tmp_path, warmup=0, steps=3) as run:
        for step in run.steps(items=1):
            if step == 2:  # two measured steps are done: their rates must already be on disk
                assert [e["step"] for e in kinds(read_events(tmp_path), "rate")] == [0, 1]


def test_warmup_excluded(tmp_path):
    with make_run(tmp_path, warmup=2, steps=3) as run:
        seen = []
        for step in run.steps(items=1):
            seen.append(step)
            time.sleep(0.2 if step < 0 else 0.01)  # slow warm-up must not count
    events = read_events(tmp_path)
    assert seen == [-2, -1, 0, 1, 2]
    assert [e["step"] for e in kinds(events, "rate")] == [0, 1, 2]
    summary = kinds(events, "summary")[0]
    assert (summary["steps"], summary["warmup"], summary["items"]) == (3, 2, 3)
    assert 0.03 <= summary["seconds"] < 0.4  # the warm-up alone slept 0.4 s


def test_stop_by_steps(tmp_path):
    with make_run(tmp_path, warmup=0, steps=4, max_seconds=600) as run:
        seen = sleepy(run, 0.001)
    assert seen == [0, 1, 2, 3]
    summary = kinds(read_events(tmp_path), "summary")[0]
    assert summary["steps"] == 4 and summary["stopped_by"] == "steps"


def test_stop_by_max_seconds(tmp_path):
    with make_run(tmp_path, warmup=1, steps=1000, max_seconds=0.2) as run:
        seen = sleepy(run, 0.05)
    events = read_events(tmp_path)
    summary, rates = kinds(events, "summary")[0], kinds(events, "rate")
    assert summary["stopped_by"] == "max_seconds"
    assert 1 <= summary["steps"] <= 4  # every step sleeps >= 0.05 s
    assert len(rates) == summary["steps"] == len(seen) - 1
    # It stops at the first step boundary at or past 0.2 s of measured time, not before.
    assert sum(r["seconds"] for r in rates[:-1]) < 0.2 <= summary["seconds"]
    assert events[-1]["status"] == "ok"


def test_summary_rate_is_items_over_seconds(tmp_path):
    with make_run(tmp_path, warmup=1, steps=5, unit="widgets/s") as run:
        sleepy(run, 0.02, items=3)
    events = read_events(tmp_path)
    rates, summary = kinds(events, "rate"), kinds(events, "summary")[0]
    assert summary["unit"] == "widgets/s" and all(r["unit"] == "widgets/s" for r in rates)
    assert summary["items"] == 15
    assert summary["seconds"] == pytest.approx(sum(r["seconds"] for r in rates))
    assert summary["rate"] == pytest.approx(summary["items"] / summary["seconds"])
    for r in rates:  # each step slept >= 20 ms for 3 items
        assert r["value"] == pytest.approx(3 / r["seconds"])
        assert 3 / 0.2 < r["value"] <= 3 / 0.02


def test_items_override(tmp_path):
    with make_run(tmp_path, warmup=1, steps=3) as run:
        for step in run.steps(items=4):
            if step == 1:
                run.items(10)
    events = read_events(tmp_path)
    assert [r["items"] for r in kinds(events, "rate")] == [4, 10, 4]
    assert kinds(events, "summary")[0]["stopped_by"] == "steps"
    assert kinds(events, "summary")[0]["items"] == 18


def test_items_only_from_run_items(tmp_path):
    with make_run(tmp_path, warmup=1, steps=5) as run:
        for step in run.steps():
            run.items(step + 3)
            if step == 1:
                break  # the benchmark may leave early: step 1 is then not counted
    events = read_events(tmp_path)
    assert [r["items"] for r in kinds(events, "rate")] == [3]
    assert kinds(events, "summary")[0]["stopped_by"] == "loop left early"


def test_missing_item_count_fails(tmp_path):
    with pytest.raises(ValueError, match="no item count"), make_run(tmp_path, warmup=1, steps=2) as run:
        for _ in run.steps():
            pass
    end = read_events(tmp_path)[-1]
    assert end["status"] == "failed" and end["error"].startswith("ValueError: no item count")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_fails(tmp_path, bad):
    with pytest.raises(mr.NonFiniteLoss), make_run(tmp_path, warmup=1, steps=5) as run:
        for step in run.steps(items=1):
            run.loss(bad if step == 1 else 0.5)
    events = read_events(tmp_path)
    assert [e["value"] for e in kinds(events, "loss")] == [0.5, 0.5]  # warm-up and step 0
    assert not kinds(events, "summary")
    end = events[-1]
    assert end["event"] == "end" and end["status"] == "failed"
    assert end["error"].startswith("NonFiniteLoss: non-finite loss at step 1")


def test_no_rate_fails(tmp_path):
    with pytest.raises(mr.NoRate), make_run(tmp_path, warmup=2, steps=5) as run:
        for step in run.steps(items=1):
            if step == 0:
                break  # leaves after the warm-up, before any measured step completes
    events = read_events(tmp_path)
    assert not kinds(events, "rate") and not kinds(events, "summary")
    assert events[-1]["status"] == "failed" and events[-1]["error"] == "no rate reported"


def test_no_steps_at_all_fails(tmp_path):
    with pytest.raises(mr.NoRate), make_run(tmp_path):
        pass
    assert read_events(tmp_path)[-1]["error"] == "no rate reported"


def test_exception_recorded_and_reraised(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), make_run(tmp_path, warmup=0, steps=5) as run:
        for step in run.steps(items=1):
            if step == 2:
                raise RuntimeError("boom\n  on two lines")
    events = read_events(tmp_path)
    assert len(kinds(events, "rate")) == 2  # the failed step is not counted
    assert not kinds(events, "summary")
    assert events[-1]["status"] == "failed"
    assert events[-1]["error"] == "RuntimeError: boom on two lines"


def test_bad_device_fails_on_enter_with_end_event(tmp_path):
    run = mr.Run(config={"benchmark": "t"}, results_dir=tmp_path, device="tpu")
    with pytest.raises(ValueError, match="MILABOX_DEVICE"), run:
        pass
    events = read_events(tmp_path)
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[-1]["status"] == "failed" and "MILABOX_DEVICE" in events[-1]["error"]


def test_misuse_is_refused(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(RuntimeError, match="inside"):
        next(run.steps(items=1))
    with pytest.raises(RuntimeError, match="inside a step"):
        run.items(3)
    with run:
        sleepy(run, 0)
        with pytest.raises(ValueError, match="runtime itself"):
            run.emit("summary", rate=1)
        run.emit("note", text="hello")
    assert kinds(read_events(tmp_path), "note")[0]["text"] == "hello"
    with pytest.raises(RuntimeError, match="only once"), run:
        pass


def test_from_env(tmp_path):
    env = {"MILABOX_CONFIG": json.dumps({"benchmark": "b", "steps": 7, "batch_size": 4}),
           "MILABOX_RESULTS": str(tmp_path / "out"), "MILABOX_DEVICE": "cpu"}
    run = mr.Run.from_env(env, defaults={"unit": "TFLOPS", "steps": 99})
    assert (run.warmup, run.num_steps, run.max_seconds) == (3, 7, 600)  # defaults < config
    assert run.unit == "TFLOPS" and run.config["batch_size"] == 4
    assert run.results_dir == tmp_path / "out" and run.device_type == "cpu"
    assert mr.Run.from_env({}).results_dir == Path(".")


@pytest.mark.parametrize(("raw", "error"), [
    ("{not json", ValueError), ("[1, 2]", TypeError), ('{"steps": 0}', ValueError),
    ('{"warmup": -1}', ValueError), ('{"steps": 2.5}', ValueError), ('{"max_seconds": 0}', ValueError),
    ('{"precision": "fp8"}', ValueError),
])
def test_from_env_rejects_bad_config(raw, error):
    with pytest.raises(error):
        mr.Run.from_env({"MILABOX_CONFIG": raw})


SCRIPT = """
import sys, time
sys.modules["torch"] = None  # the runtime must work without torch (and start fast)
import milabox_runtime as mr

def bench(run):
    mode = run.config["mode"]
    if mode == "norate":
        return
    for step in run.steps(items=1):
        if mode == "raise" and step == 1:
            raise KeyError("missing")
        if mode == "hang" and step == 1:
            print("hanging", flush=True)
            time.sleep(60)
        time.sleep(0.01)

mr.main(bench)
"""


def run_script(tmp_path: Path, mode: str, sigterm: bool = False) -> tuple[int, list[dict], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "MILABOX_CONFIG": json.dumps({"benchmark": "s", "mode": mode, "warmup": 1, "steps": 3}),
           "MILABOX_RESULTS": str(tmp_path)}
    env.pop("MILABOX_DEVICE", None)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SCRIPT)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if sigterm:
        assert proc.stdout.readline().strip() == "hanging"
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, read_events(tmp_path), err


@pytest.mark.parametrize(("mode", "code", "error"), [
    ("ok", 0, None), ("raise", 1, "KeyError: 'missing'"), ("norate", 1, "no rate reported"),
])
def test_main_exit_code(tmp_path, mode, code, error):
    rc, events, err = run_script(tmp_path, mode)
    assert rc == code, err
    assert events[-1]["event"] == "end" and events[-1]["error"] == error
    assert events[1]["torch"] is None  # ran without torch
    if code:
        assert "Traceback" in err


def test_main_sigterm_writes_end(tmp_path):
    rc, events, _ = run_script(tmp_path, "hang", sigterm=True)
    assert rc == 143
    assert events[-1]["status"] == "failed" and events[-1]["error"] == "Terminated: received signal SIGTERM"


# --- with torch (skipped where it is not installed) ------------------------------------------------


def test_loss_accepts_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.raises(mr.NonFiniteLoss), make_run(tmp_path, warmup=0, steps=3) as run:
        for step in run.steps(items=1):
            run.loss(torch.tensor(0.25) if step == 0 else torch.tensor(float("nan")))
    events = read_events(tmp_path)
    assert [e["value"] for e in kinds(events, "loss")] == [0.25]
    assert events[-1]["error"].startswith("NonFiniteLoss: non-finite loss at step 1")


@pytest.mark.parametrize(("precision", "tf32", "dtype", "autocast"), [
    ("fp32", False, "float32", None), ("tf32", True, "float32", None),
    ("fp16", False, "float16", "float16"), ("bf16", False, "bfloat16", "bfloat16"),
    ("tf32-fp16", True, "float32", "float16"),
])
def test_precision(tmp_path, precision, tf32, dtype, autocast):
    torch = pytest.importorskip("torch")
    torch.backends.cuda.matmul.allow_tf32 = not tf32  # the run must set it either way
    torch.backends.cudnn.allow_tf32 = not tf32
    with pytest.raises(mr.NoRate), make_run(tmp_path, precision=precision) as run:
        assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
        assert run.dtype == getattr(torch, dtype)
        assert run.autocast_dtype == (autocast and getattr(torch, autocast))
        if precision == "bf16":  # CPU autocast supports bf16 everywhere
            with run.autocast():
                assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        with run.autocast():
            if autocast is None:
                assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert read_events(tmp_path)[1]["precision"] == precision


def test_seed_and_device(tmp_path):
    torch = pytest.importorskip("torch")
    run = make_run(tmp_path)
    assert run.device == torch.device("cpu")
    run.seed(3)
    a = torch.rand(3)
    run.seed(3)
    assert torch.equal(a, torch.rand(3))
    with run:
        sleepy(run, 0)
    assert read_events(tmp_path)[1]["torch"] == torch.__version__


# --- rank-aware runs and the torchrun launch (milabox_runtime.distributed) -------------------------


def test_rank_other_than_0_writes_nothing_but_still_fails(tmp_path):
    rank1 = mr.Run(config={"benchmark": "t", "warmup": 1, "steps": 3}, results_dir=tmp_path / "r1",
                   device="cpu", rank=1, world_size=2, nnodes=1)
    with rank1:
        assert sleepy(rank1, 0) == [-1, 0, 1, 2]  # no process group: stops on its own count
    assert rank1.measured_steps == 3 and not (tmp_path / "r1").exists()
    with pytest.raises(mr.NoRate), mr.Run(config={"benchmark": "t"}, results_dir=tmp_path / "r1b",
                                          device="cpu", rank=1, world_size=2):
        pass
    assert not (tmp_path / "r1b").exists()
    with make_run(tmp_path / "r0", warmup=0, steps=1) as run:  # a single process says so in meta
        sleepy(run, 0)
    meta = read_events(tmp_path / "r0")[1]
    assert (meta["world_size"], meta["nnodes"]) == (1, 1)


def test_from_env_reads_torchrun_layout():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "GROUP_WORLD_SIZE": "2", "MILABOX_DEVICE": "cpu"}
    run = mr.Run.from_env(env)
    assert (run.rank, run.world_size, run.nnodes) == (3, 4, 2)
    assert mr.distributed.world(env) == (3, 4, 1, 2)
    assert mr.distributed.world({}) == (0, 1, 0, 1)
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"WORLD_SIZE": "zero"}, {"RANK": "-1"}):
        with pytest.raises(ValueError):
            mr.Run.from_env(bad)
    with pytest.raises(ValueError, match="invalid layout"):
        mr.Run(rank=2, world_size=2)


def test_torchrun_command_from_layout_variables():
    cpu = {"MILABOX_DEVICE": "cpu", "MILABOX_CONFIG": json.dumps({"nproc": 3})}
    cmd = mr.distributed.torchrun_command("/b/main.py", ["--x"], cpu)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:] == ["--nproc-per-node=3", "--nnodes=1", "--standalone", "--local-addr=127.0.0.1",
                       "--max-restarts=0", "/b/main.py", "--x"]
    nodes = {**cpu, "MILABOX_NNODES": "2", "MILABOX_NODE_RANK": "1", "MILABOX_MASTER_ADDR": "node0",
             "MILABOX_MASTER_PORT": "29600", "MILABOX_NPROC_PER_NODE": "4"}
    assert mr.distributed.torchrun_command("m.py", (), nodes)[3:-1] == [
        "--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=node0", "--master-port=29600",
        "--max-restarts=0"]
    assert mr.distributed.nproc_per_node({"MILABOX_DEVICE": "cpu"}) == 1  # no nproc in the config
    for bad, match in [({"MILABOX_NNODES": "2"}, "needs MILABOX_MASTER_ADDR"),
                       ({"MILABOX_NODE_RANK": "1"}, "below MILABOX_NNODES"),
                       ({"MILABOX_MASTER_ADDR": "a", "MILABOX_MASTER_PORT": "70000"}, "TCP port"),
                       ({"MILABOX_NPROC_PER_NODE": "0"}, "MILABOX_NPROC_PER_NODE"),
                       ({"MILABOX_CONFIG": '{"nproc": 0}'}, "nproc")]:
        with pytest.raises(ValueError, match=match):
            mr.distributed.torchrun_command("m.py", (), {**cpu, **bad})
    assert mr.distributed.backend_for("cpu", {}) == "gloo" and mr.distributed.backend_for("cuda", {}) == "nccl"
    assert mr.distributed.backend_for("xpu", {}) == "xccl"
    assert mr.distributed.backend_for("cpu", {"MILABOX_DIST_BACKEND": "NCCL"}) == "nccl"
    with pytest.raises(ValueError, match="MILABOX_DIST_BACKEND"):
        mr.distributed.backend_for("cpu", {"MILABOX_DIST_BACKEND": "mpi"})


def test_launch_if_needed_returns_when_one_process_or_inside_torchrun():
    # Returning (rather than exec'ing torchrun) is what lets these calls come back at all.
    assert mr.distributed.launch_if_needed(["x.py"], {"MILABOX_DEVICE": "cpu"}) is None
    many = {"MILABOX_DEVICE": "cpu", "MILABOX_NPROC_PER_NODE": "8"}
    assert mr.distributed.launch_if_needed(["x.py"], {**many, "LOCAL_RANK": "0"}) is None


DDP_SCRIPT = """
import time
import milabox_runtime as mr

def bench(run):
    import torch
    import torch.distributed as dist
    rank, world, _ = mr.distributed.init_process_group(run)
    try:
        mode, t = run.config["mode"], torch.ones(2)
        if mode == "straggler" and rank == 1:
            time.sleep(1.0)  # rank 0's first step waits for it in the all_reduce, rank 1's does not
        for step in run.steps(items=2 * world):
            if mode == "fail" and rank == 1 and step == 1:
                raise RuntimeError("rank 1 broke")
            dist.all_reduce(t)
            run.loss(float(t[0]) / world ** (step + run.warmup + 1))  # 1.0 while the sum is right
            time.sleep(0.01)
    finally:
        mr.distributed.destroy_process_group()

if __name__ == "__main__":
    mr.distributed.launch_if_needed()
    mr.main(bench)
"""


def ddp_env(tmp_path: Path, mode: str, out: str = "out", **config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MILABOX_", "TORCHELASTIC_")) and k not in (
               "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_WORLD_SIZE", "MASTER_ADDR",
               "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), MILABOX_DEVICE="cpu", MILABOX_RESULTS=str(tmp_path / out),
               MILABOX_CONFIG=json.dumps({"benchmark": "ddp", "mode": mode, "nproc": 2, **config}))
    return env


def ddp_script(tmp_path: Path) -> str:
    script = tmp_path / "ddp_bench.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    return str(script)


def run_ddp_script(tmp_path: Path, mode: str, **config) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, ddp_script(tmp_path)], env=ddp_env(tmp_path, mode, **config), text=True,
                          capture_output=True, timeout=120, check=False)
    events_file = tmp_path / "out" / mr.EVENTS_NAME
    return proc.returncode, read_events(tmp_path / "out") if events_file.exists() else [], proc.stderr


def test_two_gloo_processes_one_events_file_and_agreed_stop(tmp_path):
    pytest.importorskip("torch")
    rc, events, err = run_ddp_script(tmp_path, "straggler", warmup=0, steps=50, max_seconds=0.5)
    assert rc == 0, err[-3000:]
    assert len(kinds(events, "start")) == 1 and len(kinds(events, "end")) == 1  # rank 0 only
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / mr.EVENTS_NAME]
    meta, summary = kinds(events, "meta")[0], kinds(events, "summary")[0]
    assert (meta["world_size"], meta["nnodes"], meta["device"]["type"]) == (2, 1, "cpu")
    # Rank 0's first step waited ~1 s for rank 1, past max_seconds; rank 1's own clock was far below
    # it, so a clean exit shows both stopped at the step rank 0 chose (else rank 1's next all_reduce
    # would find no peer and fail the job).
    assert summary["stopped_by"] == "max_seconds" and summary["steps"] < 50
    assert summary["rate"] > 0 and all(r["items"] == 4 for r in kinds(events, "rate"))
    assert {e["value"] for e in kinds(events, "loss")} == {1.0}  # the all_reduce summed both ranks


def test_failure_of_rank_1_fails_the_job(tmp_path):
    pytest.importorskip("torch")
    rc, events, err = run_ddp_script(tmp_path, "fail", warmup=1, steps=5)
    assert rc != 0
    assert "rank 1 broke" in err
    assert len(kinds(events, "start")) == 1 and not kinds(events, "summary")
    assert events[-1]["event"] == "end" and events[-1]["status"] == "failed"


def test_two_nodes_static_rendezvous_only_node_0_writes(tmp_path):
    pytest.importorskip("torch")
    import socket

    with socket.socket() as sock:  # a free loopback port for node 0's store
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script, procs = ddp_script(tmp_path), []
    for node in (0, 1):  # what the host sets for a two-node run, both nodes on this machine
        env = {**ddp_env(tmp_path, "ok", out=f"node{node}", warmup=1, steps=3),
               "MILABOX_NNODES": "2", "MILABOX_NODE_RANK": str(node), "MILABOX_MASTER_ADDR": "127.0.0.1",
               "MILABOX_MASTER_PORT": str(port), "MILABOX_NPROC_PER_NODE": "1"}
        procs.append(subprocess.Popen([sys.executable, script], env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT))
    try:
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:  # torchrun passes SIGTERM on to its workers
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "--nnodes=2 --node-rank=0 --master-addr=127.0.0.1" in outputs[0]
    assert not (tmp_path / "node1").exists()  # global rank 1 writes nothing
    events = read_events(tmp_path / "node0")
    meta = kinds(events, "meta")[0]
    assert (meta["world_size"], meta["nnodes"]) == (2, 2)
    assert kinds(events, "summary")[0]["items"] == 12  # 3 steps x 2 items x 2 processes
    assert {e["value"] for e in kinds(events, "loss")} == {1.0}


def test_train_on_batches_trains_and_records_every_measured_step(tmp_path):
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from milabox_runtime.training import train_on_batches

    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x, y):
            return SimpleNamespace(loss=torch.nn.functional.mse_loss(self.linear(x), y))

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    batches = [{"x": x, "y": x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])}]
    model = Regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = make_run(tmp_path, warmup=2, steps=30, unit="items/s")
    with run:
        train_on_batches(run, model, optimizer, batches, items=64)
    events = read_events(tmp_path)
    losses = [e["value"] for e in events if e["event"] == "loss"]
    assert len([e for e in events if e["event"] == "rate"]) == 30
    assert len(losses) == 32 and losses[-1] < losses[0] / 10  # it really trained
    assert events[-1]["event"] == "end" and events[-1]["status"] == "ok"


class _FakeClock:
    """perf_counter for the measured loop: each step takes ``step_s`` (a fake clock, nothing sleeps)."""

    def __init__(self, step_s: float):
        self.now, self.step_s, self.reads = 0.0, step_s, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the read after a step's body
            self.now += self.step_s
        return self.now


@pytest.mark.parametrize(("config", "steps", "stopped_by"), [
    ({"steps": 3, "min_seconds": 1.0, "max_seconds": 10}, 8, "min_seconds"),  # steps done, time not yet
    ({"steps": 30, "min_seconds": 1.0, "max_seconds": 10}, 30, "steps"),      # time done, steps not yet
    ({"steps": 3, "min_seconds": 5.0, "max_seconds": 5.0}, 40, "min_seconds"),  # the cap equals the floor
    ({"steps": 500, "min_seconds": 1.0, "max_seconds": 2.0}, 16, "max_seconds"),  # the hard cap wins
])
def test_min_seconds_keeps_measuring_until_both_steps_and_seconds(tmp_path, monkeypatch, config, steps, stopped_by):
    monkeypatch.setattr(mr.run.time, "perf_counter", _FakeClock(0.125))  # exact in binary: no rounding at 1 s
    with make_run(tmp_path, warmup=0, **config) as run:
        for _ in run.steps(items=1):
            pass
    summary = kinds(read_events(tmp_path), "summary")[0]
    assert (summary["steps"], summary["stopped_by"]) == (steps, stopped_by)


def test_min_seconds_above_max_seconds_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'min_seconds' must be >= 0 and <= max_seconds"):
        make_run(tmp_path, min_seconds=20, max_seconds=10)
