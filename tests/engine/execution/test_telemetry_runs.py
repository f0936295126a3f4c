"""Telemetry, energy and provenance.

The CPU backend is tested for real (psutil, a real busy process, a real sampling thread). There is no
GPU here, so the NVIDIA, AMD and Intel backends run against FAKE vendor libraries (a fake ``pynvml``
and ``amdsmi`` module, a fake ``xpu-smi`` executable), and their tests say so in their names.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import warnings

import pytest
from helpers import MILABOX, _lines

from milabox.engine import BindMount, ContainerRequest
from milabox.execution.provenance import PACKAGES_PATH
from milabox.execution.telemetry import TelemetryWarning
from milabox.reporting.provenance import format_provenance, load_provenance
from milabox.rundir.layout import TELEMETRY_NAME

# --------------------------------------------------------------------------------------------
# On the real engine


@pytest.mark.engine
def test_docker_run_command_creates_the_same_container(engine, tmp_path):
    from milabox.definitions.vendors import get_vendor
    from milabox.images.naming import runtime_tag
    request = ContainerRequest(image=runtime_tag(get_vendor("cpu")), command=("python", "-c", "print('hi there')"),
                               environment={"MILABOX_CONFIG": '{"n": 1, "s": "a b"}'}, user="1234:1234",
                               mounts=(BindMount(str(tmp_path), "/results", read_only=False),), shm_size="64m",
                               labels={"milabox.benchmark": "reproduce-test"})
    args = shlex.split(request.docker_run_command())
    assert args[:3] == ["docker", "run", "--rm"]
    created = subprocess.run(["docker", "create", *args[3:]], capture_output=True, text=True, timeout=60, check=False)
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip()
    try:
        attrs = engine.client.containers.get(cid).attrs
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60, check=False)
    assert 'MILABOX_CONFIG={"n": 1, "s": "a b"}' in attrs["Config"]["Env"]
    assert attrs["Config"]["Cmd"] == ["python", "-c", "print('hi there')"] and attrs["Config"]["User"] == "1234:1234"
    assert attrs["HostConfig"]["NetworkMode"] == "none" and attrs["HostConfig"]["ShmSize"] == 64 * 2**20
    assert [(m["Source"], m["Target"], m.get("ReadOnly", False)) for m in attrs["HostConfig"]["Mounts"]] == [
        (str(tmp_path), "/results", False)]
    assert attrs["Config"]["Labels"]["milabox.benchmark"] == "reproduce-test"


@pytest.mark.engine
def test_image_files_are_read_without_running_the_image(engine):
    from milabox.definitions.vendors import get_vendor
    from milabox.images.naming import runtime_tag
    tag = runtime_tag(get_vendor("cpu"))
    files = engine.read_image_files(tag, [PACKAGES_PATH, "/no/such/file", "/opt/milabox"])
    assert b"torch==" in files[PACKAGES_PATH]
    assert files["/no/such/file"] is None and files["/opt/milabox"] is None  # a folder is not a file
    assert engine.containers("milabox.benchmark=read-image-files") == []  # its container is gone


@pytest.mark.engine
def test_a_real_run_writes_telemetry_and_provenance(engine, tmp_path):
    from milabox.definitions.benchmarks import all_benchmarks, select
    from milabox.definitions.vendors import get_vendor
    from milabox.execution.local import run
    from milabox.execution.plan import RunOptions
    from milabox.images.naming import benchmark_tag
    cpu = get_vendor("cpu")
    assert engine.image(benchmark_tag("matmul", cpu)) is not None, "build it first: milabox build matmul"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TelemetryWarning)  # no RAPL here is fine
        folder = run(engine, select(["matmul-fp32"], all_benchmarks()), cpu,
                     RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0.5, command=("milabox", "run", "x")))
    attempt = folder / "matmul-fp32" / "r0-dall"
    record = json.loads((attempt / "record.json").read_text())
    assert record["status"] == "ok", record["cause"]
    samples = _lines(attempt / TELEMETRY_NAME)
    started = dt.datetime.fromisoformat(record["started"]).timestamp()
    assert len(samples) >= 3 and {s["device"] for s in samples} == {"cpu"}
    assert started - 2 <= samples[0]["time"] <= samples[-1]["time"] <= started + record["wall_s"] + 2
    assert max(s["util_pct"] for s in samples) > 0
    prov = load_provenance(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    image = prov["images"]["matmul"]
    assert image["id"] == manifest["images"]["matmul"]["id"] and image["torch"]["version"] == cpu.torch_version
    assert any(p.startswith("torch==") for p in image["packages"])
    assert prov["command"] == ["milabox", "run", "x"] and prov["settings"]["telemetry_interval_s"] == 0.5
    assert prov["host"]["cpu_cores_logical"] == os.cpu_count() and prov["host"]["kernel"]
    assert prov["devices"]["telemetry_backend"] == "psutil"
    assert prov["devices"]["backends"]["psutil"]["devices"][0]["id"] == "cpu"
    [planned] = prov["attempts"]
    assert planned["folder"] == "matmul-fp32/r0-dall"
    assert planned["container_request"] == record["container_request"]
    assert planned["reproduce"] == record["reproduce"] and planned["reproduce"].startswith("docker run --rm")
    text = format_provenance(prov, str(folder))
    assert "matmul-fp32/r0-dall" in text and "torch==" in text
    out = subprocess.run([*MILABOX, "report", str(folder), "--provenance"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == text
    assert engine.containers("milabox.benchmark=read-image-files") == []
