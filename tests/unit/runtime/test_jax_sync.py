"""A jax run's clock waits for each step's results (milabox_runtime.run.Run.ready, milabox_runtime.jaxdev), driven by
a fake jax whose dispatched work completes only when waited on (``jax.block_until_ready``).

Like test_sync.py's fake accelerator, the fake's clock moves only when the host waits: a clock read without
``block_until_ready`` on what the step returned times nothing (a near-zero time and a huge rate).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import milabox_runtime as mr
from milabox_runtime import device as runtime_device
from milabox_runtime import jaxdev

WARMUP_WORK_S = 0.5  # dispatched by the warm-up step (compilation, say)
STEP_WORK_S = 0.25  # dispatched by each measured step; exact in binary, so the times compare exactly
ITEMS = 16.0


class FakeJax:
    """A fake ``jax`` module: :meth:`dispatch` queues work and returns a handle at once; only
    :meth:`block_until_ready` waits for it (and moves :meth:`clock`)."""

    __version__ = "0.0-fake"

    def __init__(self) -> None:
        self.now, self.pending, self.waits = 0.0, 0.0, 0
        self.device = SimpleNamespace(platform="gpu", device_kind="fake jax accelerator",
                                      memory_stats=lambda: {"bytes_limit": 2**30, "peak_bytes_in_use": 3 * 2**20})

    def dispatch(self, seconds: float) -> dict:
        self.pending += seconds
        return {"state": object(), "loss": 0.5}

    def block_until_ready(self, out):
        self.waits += 1
        self.now += self.pending
        self.pending = 0.0
        return out

    def clock(self) -> float:
        return self.now

    def default_backend(self) -> str:
        return "gpu"

    def local_devices(self) -> list:
        return [self.device]


def _no_torch(required: bool = False):
    raise AssertionError("a jax run must not import torch")


def measure(tmp_path: Path, monkeypatch, hand_over: bool = True, steps: int = 4) -> tuple[FakeJax, list[dict]]:
    """Run a jax benchmark that only dispatches work; (the fake, the events written)."""
    fake = FakeJax()
    monkeypatch.setattr(jaxdev, "import_jax", lambda required=False: fake)
    monkeypatch.setattr(runtime_device, "import_torch", _no_torch)
    monkeypatch.setattr(mr.run.time, "perf_counter", fake.clock)
    try:
        with mr.Run(config={"benchmark": "t", "size": "smoke", "warmup": 1, "steps": steps}, results_dir=tmp_path,
                    framework="jax") as run:
            for step in run.steps(items=ITEMS):
                out = fake.dispatch(WARMUP_WORK_S if step < 0 else STEP_WORK_S)
                if hand_over:
                    run.ready(out)
                run.loss(out["loss"])
    finally:
        lines = (tmp_path / mr.EVENTS_NAME).read_text(encoding="utf-8").splitlines()
    return fake, [json.loads(line) for line in lines]


def test_a_jax_step_is_timed_until_its_results_are_ready(tmp_path, monkeypatch):
    fake, events = measure(tmp_path, monkeypatch)
    rates = [e for e in events if e["event"] == "rate"]
    assert [e["seconds"] for e in rates] == [STEP_WORK_S] * 4  # not ~0 (no wait), not + warm-up (its own wait)
    assert [e["value"] for e in rates] == [ITEMS / STEP_WORK_S] * 4
    assert fake.waits == 1 + len(rates)
    (summary,) = [e for e in events if e["event"] == "summary"]
    assert (summary["seconds"], summary["rate"]) == (4 * STEP_WORK_S, ITEMS / STEP_WORK_S)


def test_a_jax_run_takes_its_device_facts_and_memory_from_jax(tmp_path, monkeypatch):
    _, events = measure(tmp_path, monkeypatch, steps=1)
    meta = next(e for e in events if e["event"] == "meta")
    assert (meta["framework"], meta["jax"], meta["torch"]) == ("jax", "0.0-fake", None)
    assert meta["device"]["name"] == "fake jax accelerator" and meta["device"]["type"] == "cuda"
    assert meta["device"]["memory_mb"] == 1024
    assert next(e for e in events if e["event"] == "memory")["peak_mb"] == 3.0


def test_a_measured_jax_step_that_hands_nothing_to_ready_fails(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match=r"run\.ready"):
        measure(tmp_path, monkeypatch, hand_over=False)
    events = [json.loads(line) for line in (tmp_path / mr.EVENTS_NAME).read_text(encoding="utf-8").splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "failed"
    assert not [e for e in events if e["event"] == "rate"]


def test_a_jax_loss_that_is_nan_fails_the_run(tmp_path, monkeypatch):
    fake = FakeJax()
    monkeypatch.setattr(jaxdev, "import_jax", lambda required=False: fake)
    monkeypatch.setattr(runtime_device, "import_torch", _no_torch)
    with pytest.raises(mr.NonFiniteLoss), mr.Run(config={"warmup": 0, "steps": 2}, results_dir=tmp_path,
                                                  framework="jax") as run:
        for _ in run.steps(items=ITEMS):
            run.ready(fake.dispatch(STEP_WORK_S))
            run.loss(SimpleNamespace(item=lambda: float("nan")))  # a 0-d jax array answers .item()


def test_an_unknown_framework_is_refused():
    with pytest.raises(ValueError, match="framework"):
        mr.Run(config={}, framework="tensorflow")
