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

import milabox_runtime as mr

ROOT = Path(__file__).resolve().parent.parent


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
