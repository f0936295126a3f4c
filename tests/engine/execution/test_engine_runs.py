"""End to end on the real Docker engine: run the CPU images, find results on the host.

Nothing here fakes the engine. GPU passthrough is checked the only way this GPU-less machine allows:
containers are created (not started) with each vendor's request and their HostConfig inspected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from helpers import CPU, MILABOX, _build

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.engine import CONTAINER_LABEL
from milabox.execution.local import run
from milabox.execution.plan import Attempt, RunOptions
from milabox.execution.requests import container_request
from milabox.images.naming import benchmark_tag
from milabox.reporting.formats import format_report
from milabox.reporting.summary import summarize
from milabox.rundir.read import load_run

pytestmark = pytest.mark.engine


def _no_milabox_containers(engine):
    return engine.containers() == []


def test_smoke_run_results_reach_the_host_and_report(engine, cpu_images, tmp_path):
    benches = select(["matmul-fp32", "matmul-bf16", "bert-fp32"], all_benchmarks())
    folder = run(engine, benches, CPU, RunOptions(size="smoke", run_dir=tmp_path / "run"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["vendor"] == "cpu"
    assert manifest["images"]["bert"]["id"] == cpu_images["bert"].image_id
    for name in ("matmul-fp32", "matmul-bf16", "bert-fp32"):
        attempt = folder / name / "r0-dall"
        record = json.loads((attempt / "record.json").read_text())
        assert record["status"] == "ok", record["cause"]
        events = [json.loads(line) for line in (attempt / "events.jsonl").read_text().splitlines()]
        kinds = [e["event"] for e in events]
        assert kinds[0] == "start" and kinds[-1] == "end" and "summary" in kinds
        assert record["container_request"]["network_mode"] == "none"
        assert [m for m in record["container_request"]["mounts"] if not m["read_only"]] == [
            {"source": str(attempt.resolve()), "target": "/results", "read_only": False}]
    data = json.loads(format_report(summarize(load_run(folder)), "json"))
    rows = {row["name"]: row for row in data["benchmarks"]}
    assert rows["matmul-fp32"]["unit"] == "TFLOPS" and rows["bert-fp32"]["unit"] == "items/s"
    assert all(row["perf"] > 0 and row["fail"] == 0 for row in rows.values())
    # Both rows weigh 0 as in Milabench (a diagnostic and a precision showcase): no suite score, and it says why.
    assert data["failure_rate"] == 0 and data["score"] is None
    assert data["coverage"]["rows"] == [], data["coverage"]
    assert _no_milabox_containers(engine)


def _add_benchmark(folder: Path, name: str, code: str, timeout_s: int = 60) -> None:
    (folder / name).mkdir()
    (folder / name / "main.py").write_text(textwrap.dedent(code))
    sizes = f"warmup = 0\nsteps = 1\ntimeout_s = {timeout_s}\n"
    (folder / name / "benchmark.toml").write_text(
        f'description = "planted {name}"\nfamily = "test"\nunit = "items/s"\n'
        f"[sizes.smoke]\n{sizes}[sizes.full]\n{sizes}")


@pytest.fixture
def broken_benchmarks(engine, cpu_images, benchmarks_copy, tmp_path):
    """Planted failures beside the real benchmarks: a crash, a hang, and a clean exit with no rate."""
    _add_benchmark(benchmarks_copy, "crash", 'raise SystemExit("planted failure: tensor shapes disagree")\n')
    _add_benchmark(benchmarks_copy, "hang", "import time\ntime.sleep(3600)\n", timeout_s=5)
    _add_benchmark(benchmarks_copy, "norate", 'print("finished without measuring")\n')
    _add_benchmark(benchmarks_copy, "hog", "hoard = []\nwhile True:\n    hoard.append(bytearray(2**24))\n")
    _build(engine, ["crash", "hang", "norate", "hog"], tmp_path / "logs")
    return benchmarks_copy


def test_failed_benchmarks_are_recorded_and_the_suite_goes_on(engine, broken_benchmarks, tmp_path):
    benches = select(["crash", "hang", "norate", "matmul-fp32"], all_benchmarks())
    folder = run(engine, benches, CPU, RunOptions(size="smoke", run_dir=tmp_path / "run"))
    records = {p.parent.parent.name: json.loads(p.read_text()) for p in folder.glob("*/*/record.json")}
    assert records["crash"]["status"] == "failed" and records["crash"]["exit_code"] == 1
    assert "planted failure: tensor shapes disagree" in records["crash"]["cause"]
    assert records["hang"]["status"] == "failed" and records["hang"]["timed_out"]
    assert records["hang"]["cause"] == "timed out after 5 s (killed)" and records["hang"]["wall_s"] < 30
    assert records["norate"]["status"] == "failed" and "no rate reported" in records["norate"]["cause"]
    assert records["matmul-fp32"]["status"] == "ok"
    summary = summarize(load_run(folder))
    assert summary.failure_rate == pytest.approx(3 / 4)
    assert set(summary.incomplete) == {"crash", "hang", "norate"}
    text = format_report(summary, "table")
    assert "planted failure" in text and "timed out" in text
    assert _no_milabox_containers(engine)


def test_out_of_memory_is_recorded_as_such(engine, broken_benchmarks, tmp_path):
    folder = run(engine, select(["hog"], all_benchmarks()), CPU,
                 RunOptions(size="smoke", run_dir=tmp_path / "run", memory="96m"))
    record = json.loads((folder / "hog" / "r0-dall" / "record.json").read_text())
    assert record["status"] == "failed" and record["oom_killed"]
    assert record["cause"] == "out of memory (OOM-killed)"
    assert record["container_request"]["memory"] == "96m"
    assert _no_milabox_containers(engine)


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c-inherited-ignored", "ctrl-c-twice", "sigterm"])
def test_ctrl_c_stops_the_container_keeps_results_and_leaves_nothing(engine, broken_benchmarks, tmp_path, how):
    """The hang benchmark is PID 1 of its container and ignores SIGTERM: only a kill after the grace period ends it."""
    folder = tmp_path / "run"
    env = {**os.environ, "MILABOX_SUITE": str(broken_benchmarks)}
    command = [*MILABOX, "run", "crash", "hang", "norate", "--timeout", "120", "--run-dir", str(folder)]
    if how == "ctrl-c-inherited-ignored":  # what `cmd &` in a script, and some CI runners, hand down
        command = ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not (folder / "hang").exists():
        time.sleep(0.2)
    while time.monotonic() < deadline and proc.poll() is None and not engine.containers():
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    assert engine.containers(), "the hang benchmark's container never appeared"
    time.sleep(1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    if how == "ctrl-c-twice":  # during the cleanup: it must neither cut it short nor leave anything half done
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15, err
    assert proc.returncode == 130, err
    assert _no_milabox_containers(engine)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert json.loads((folder / "crash" / "r0-dall" / "record.json").read_text())["status"] == "failed"
    hang = json.loads((folder / "hang" / "r0-dall" / "record.json").read_text())
    assert hang["status"] == "interrupted" and "Ctrl-C" in hang["cause"] and hang["wall_s"] < 15
    assert not (folder / "norate").exists()  # the rest of the run was skipped, not run
    assert "Traceback" not in err
    assert ("already stopping" in err) == (how == "ctrl-c-twice")


@pytest.mark.parametrize("vendor_name", ["cuda", "rocm", "xpu"])
def test_gpu_passthrough_requests_as_the_engine_sees_them(engine, cpu_images, vendor_name, tmp_path):
    """Created, never started: this machine has no GPU, driver or /dev/kfd; the engine accepts the request."""
    vendor = get_vendor(vendor_name)
    bench = all_benchmarks()["matmul-fp32"]
    request = container_request(Attempt(bench, 0, ("1",)), vendor, benchmark_tag("matmul", CPU), tmp_path, "full")
    with engine.container(request) as container:
        host = container.inspect()["HostConfig"]
        env = container.inspect()["Config"]["Env"]
    assert host["NetworkMode"] == "none" and not host.get("Privileged")
    binds = [m for m in container_mounts(host) if not m["ReadOnly"]]
    assert binds == [{"Source": str(tmp_path.resolve()), "Target": "/results", "ReadOnly": False}]
    devices = [d["PathOnHost"] for d in host.get("Devices") or []]
    if vendor_name == "cuda":
        (req,) = host["DeviceRequests"]
        assert req["DeviceIDs"] == ["1"] and req["Capabilities"] == [["gpu"]]
        assert host["IpcMode"] == "host" and devices == []
    elif vendor_name == "rocm":
        assert devices == ["/dev/kfd", "/dev/dri"] and "video" in host["GroupAdd"]
        assert "seccomp=unconfined" in host["SecurityOpt"] and host["IpcMode"] == "host"
        assert host["ShmSize"] == 8 * 1024**3 and "ROCR_VISIBLE_DEVICES=1" in env
        assert not host.get("DeviceRequests")
    else:
        assert devices == ["/dev/dri"] and "ZE_AFFINITY_MASK=1" in env and host["IpcMode"] == "host"
        by_path = {"Source": "/dev/dri/by-path", "Target": "/dev/dri/by-path", "ReadOnly": True}
        assert (by_path in container_mounts(host)) == Path("/dev/dri/by-path").exists()
    assert _no_milabox_containers(engine)


def test_vendor_volumes_are_mounted_read_only(engine, cpu_images, vendors_copy, tmp_path):
    """XPU's /dev/dri/by-path does not exist here: point the same vendor field at a folder that does."""
    shared = tmp_path / "by-path"
    shared.mkdir()
    path = vendors_copy / "xpu.toml"
    path.write_text(path.read_text().replace('"/dev/dri/by-path" = "/dev/dri/by-path"', f'"{shared}" = "/dev/dri/by-path"'))
    vendor = get_vendor("xpu")
    results = tmp_path / "results"
    results.mkdir()
    request = container_request(Attempt(all_benchmarks()["matmul-fp32"], 0, ()), vendor, benchmark_tag("matmul", CPU),
                                results, "smoke")
    with engine.container(request) as container:
        mounts = container_mounts(container.inspect()["HostConfig"])
    assert {"Source": str(shared), "Target": "/dev/dri/by-path", "ReadOnly": True} in mounts
    assert [m for m in mounts if not m["ReadOnly"]] == [{"Source": str(results.resolve()), "Target": "/results",
                                                         "ReadOnly": False}]


def container_mounts(host_config):
    return [{"Source": m["Source"], "Target": m["Target"], "ReadOnly": bool(m.get("ReadOnly"))}
            for m in host_config.get("Mounts") or []]


def test_containers_carry_the_milabox_label(engine, cpu_images, tmp_path):
    request = container_request(Attempt(all_benchmarks()["bert-fp32"], 0, ()), CPU, benchmark_tag("bert", CPU), tmp_path,
                                "smoke", run_name="x")
    with engine.container(request) as container:
        assert container.id in engine.containers()
        assert container.inspect()["Config"]["Labels"][CONTAINER_LABEL] == "bert-fp32"
    assert container.id not in engine.containers()
