"""A benchmark image run with a plain ``docker run``, as a vendor runs it: no milabox on the host, no MILABOX_CONFIG."""

from __future__ import annotations

import json
import os

import docker.errors
import pytest
from helpers import CPU

from milabox.images.naming import benchmark_tag
from milabox_runtime.cli import RESULTS_MOUNT

pytestmark = pytest.mark.engine


def _run(engine, *command, volumes=None):
    return engine.client.containers.run(benchmark_tag("matmul", CPU), list(command), remove=True, network_mode="none",
                                        user=f"{os.getuid()}:{os.getgid()}", volumes=volumes or {},
                                        stdout=True, stderr=True).decode()


def test_docker_run_image_alone_prints_the_help(engine, cpu_images):
    out = _run(engine)
    assert "matmul-fp32" in out and "not on cpu: matmul-tf32" in out
    assert f"--network none --user \"$(id -u):$(id -g)\" --mount \"type=bind,source=$PWD/results,target=" \
           f"{RESULTS_MOUNT}\" {benchmark_tag('matmul', CPU)} run matmul-fp32" in out


def test_run_writes_events_with_a_rate_into_the_mounted_folder(engine, cpu_images, tmp_path):
    _run(engine, "run", "matmul-fp32", volumes={str(tmp_path): {"bind": RESULTS_MOUNT, "mode": "rw"}})
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["benchmark"] == "matmul-fp32"
    assert any(e["event"] == "rate" and e["value"] > 0 and e["unit"] == "TFLOPS" for e in events)
    assert events[-1]["event"] == "end" and events[-1]["status"] == "ok"


def test_run_without_a_results_mount_is_one_line_and_exit_2(engine, cpu_images):
    with pytest.raises(docker.errors.ContainerError) as caught:
        _run(engine, "run", "matmul-fp32")
    assert caught.value.exit_status == 2
    stderr = caught.value.stderr.decode()
    assert stderr.count("\n") == 1 and f"{RESULTS_MOUNT} is not a mount point" in stderr, stderr
