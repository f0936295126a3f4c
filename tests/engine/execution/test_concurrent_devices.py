"""On the real engine: ``--devices 0,1`` on the CPU vendor runs two pinned containers at the same time."""

from __future__ import annotations

import json

import pytest
from helpers import CPU

from milabox.definitions.benchmarks import all_benchmarks
from milabox.execution.local import run
from milabox.execution.plan import RunOptions
from milabox.rundir.layout import EVENTS_NAME, RECORD_NAME

pytestmark = pytest.mark.engine


def test_two_cpu_devices_run_together_pinned_to_their_cores(engine, cpu_images, tmp_path):
    folder = run(engine, [all_benchmarks()["matmul-fp32"]], CPU,
                 RunOptions(size="smoke", devices=("0", "1"), run_dir=tmp_path / f"run-{tmp_path.name}",
                            telemetry_interval_s=0))
    spans, cpusets = [], []
    for attempt in ("r0-d0", "r0-d1"):
        record = json.loads((folder / "matmul-fp32" / attempt / RECORD_NAME).read_text())
        assert record["status"] == "ok", record["cause"]
        assert record["concurrent"] == ["0", "1"]
        cpusets.append(record["container_request"]["cpuset_cpus"])
        events = [json.loads(line) for line in (folder / "matmul-fp32" / attempt / EVENTS_NAME).read_text().splitlines()]
        spans.append((events[0]["time"], events[-1]["time"]))  # the runtime's start and end, inside the container
    assert all(cpusets) and not set(cpusets[0].split(",")) & set(cpusets[1].split(","))
    (start0, end0), (start1, end1) = spans
    assert max(start0, start1) < min(end0, end1), f"the two containers did not overlap: {spans}"
    assert engine.containers(f"milabox.run={folder.name}") == []  # this run's (other runs may share the engine)
