"""The measured loop synchronises the device before each clock read (milabox_runtime.run.Run.steps and
milabox_runtime.device.synchronize), driven by a fake asynchronous accelerator.

No accelerator here: the fake stands for one. Like a GPU, its work is queued and returns at once; it completes
only when the host synchronises. Its clock is fake too (nothing sleeps), so the expected times are exact: timing
without the synchronisation after a step reads near-zero time and a huge rate; without the one before, the first
measured step also carries the warm-up's queued work.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import milabox_runtime as mr
from milabox_runtime import device as runtime_device

WARMUP_WORK_S = 0.5  # queued by the (unsynchronised) warm-up step
STEP_WORK_S = 0.125  # queued by each measured step; exact in binary, so the times compare exactly
ITEMS = 8.0


class FakeAsyncAccelerator:
    """A fake ``torch.cuda``: :meth:`launch` queues work; only :meth:`synchronize` waits for it.

    ``clock`` is the host's time as this fake sees it (installed as ``time.perf_counter``): waiting for the
    device is the only thing that moves it.
    """

    def __init__(self) -> None:
        self.now, self.pending, self.syncs = 0.0, 0.0, 0

    def launch(self, seconds: float) -> None:
        self.pending += seconds

    def synchronize(self) -> None:
        self.syncs += 1
        self.now += self.pending
        self.pending = 0.0

    def clock(self) -> float:
        return self.now

    # What the runtime asks of a backend besides synchronize (device choice, the meta event, peak memory).
    def is_available(self) -> bool:
        return True

    def set_device(self, index: int) -> None:
        pass

    def current_device(self) -> int:
        return 0

    def device_count(self) -> int:
        return 1

    def get_device_name(self, index: int) -> str:
        return "fake asynchronous accelerator"

    def get_device_properties(self, index: int) -> SimpleNamespace:
        return SimpleNamespace(total_memory=2**30)

    def get_device_capability(self, index: int) -> tuple[int, int]:
        return (9, 0)

    def max_memory_allocated(self) -> int:
        return 0


def fake_torch(accelerator: FakeAsyncAccelerator) -> SimpleNamespace:
    """A fake torch module whose ``cuda`` is ``accelerator`` (only what milabox_runtime reads)."""
    flags = SimpleNamespace(allow_tf32=False)
    return SimpleNamespace(
        __version__="0.0-fake", version=SimpleNamespace(cuda="fake", hip=None), cuda=accelerator,
        backends=SimpleNamespace(cuda=SimpleNamespace(matmul=flags), cudnn=SimpleNamespace(allow_tf32=False)),
        device=lambda kind, index=None: f"{kind}:{index}", get_num_threads=lambda: 1)


def measure(tmp_path: Path, monkeypatch, steps: int = 4) -> tuple[FakeAsyncAccelerator, list[dict]]:
    """Run a benchmark that only queues work on the fake accelerator; (the fake, the events written)."""
    accelerator = FakeAsyncAccelerator()
    torch = fake_torch(accelerator)
    monkeypatch.setattr(runtime_device, "import_torch", lambda required=False: torch)
    monkeypatch.setattr(mr.run.time, "perf_counter", accelerator.clock)
    with mr.Run(config={"benchmark": "t", "size": "smoke", "warmup": 1, "steps": steps}, results_dir=tmp_path,
                device="cuda") as run:
        for step in run.steps(items=ITEMS):
            accelerator.launch(WARMUP_WORK_S if step < 0 else STEP_WORK_S)
    lines = (tmp_path / mr.EVENTS_NAME).read_text(encoding="utf-8").splitlines()
    return accelerator, [json.loads(line) for line in lines]


def test_each_measured_step_times_its_own_queued_work(tmp_path, monkeypatch):
    accelerator, events = measure(tmp_path, monkeypatch)
    rates = [e for e in events if e["event"] == "rate"]
    assert [e["seconds"] for e in rates] == [STEP_WORK_S] * 4  # not ~0 (no sync after), not + warm-up (before)
    assert [e["value"] for e in rates] == [ITEMS / STEP_WORK_S] * 4
    assert accelerator.syncs >= 2 * len(rates)
    (summary,) = [e for e in events if e["event"] == "summary"]
    assert (summary["seconds"], summary["rate"]) == (4 * STEP_WORK_S, ITEMS / STEP_WORK_S)
    meta = next(e for e in events if e["event"] == "meta")
    assert meta["device"]["name"] == "fake asynchronous accelerator"  # the fake really was the device
