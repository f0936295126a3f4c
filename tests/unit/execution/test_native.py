"""``--runtime native``: a planted benchmark run as real processes of this environment (no engine, no image).

Each test runs a tiny benchmark folder written here (benchmark.toml + main.py using milabox_runtime) and reads
the run folder back; the only fake is the engine of the one test that compares native records with container
records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fakes import FakeEngine, ok
from helpers import CPU, MILABOX, PROJECT, planted_toml

from milabox.definitions.benchmarks import load_group
from milabox.errors import ConfigError
from milabox.execution.local import run
from milabox.execution.plan import RunOptions
from milabox.images.naming import benchmark_tag
from milabox.rundir.layout import MANIFEST_NAME, PROVENANCE_NAME, RECORD_NAME
from milabox.rundir.read import load_run

PLANT_TOML = planted_toml("planted native benchmark", {"warmup": 1, "steps": 5, "timeout_s": 120}, plan="all_devices")
# PLANT_MODE (set with --env): ok, crash, or sleep (with a grandchild, to prove the whole process group goes).
PLANT_MAIN = '''\
import os, pathlib, subprocess, sys, time
results = pathlib.Path(os.environ["MILABOX_RESULTS"])
mode = os.environ.get("PLANT_MODE", "ok")
(results / "pid").write_text(str(os.getpid()))
if mode == "sleep":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (results / "child.pid").write_text(str(child.pid))
    time.sleep(600)
import milabox_runtime as mr


def bench(run):
    if mode == "crash":
        raise RuntimeError("planted crash")
    for _ in run.steps(items=10):
        time.sleep(0.01)


if __name__ == "__main__":
    mr.main(bench)
'''


@pytest.fixture
def plant(tmp_path):
    """A folder of benchmark folders holding ``plant`` (one benchmark of the same name)."""
    root = tmp_path / "benchmarks"
    (root / "plant").mkdir(parents=True)
    (root / "plant" / "benchmark.toml").write_text(PLANT_TOML)
    (root / "plant" / "main.py").write_text(PLANT_MAIN)
    return root


def _native(plant, tmp_path, mode: str, **options):
    bench = load_group(plant / "plant")
    folder = run(None, bench, CPU, RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0, runtime="native",
                                             command=("milabox", "run"), environment={"PLANT_MODE": mode},
                                             **options))
    return folder, json.loads((folder / "plant" / "r0-dall" / RECORD_NAME).read_text())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _no_process_left(attempt) -> None:
    pids = [int((attempt / name).read_text()) for name in ("pid", "child.pid")]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)  # a killed orphan is reaped by init, not by milabox
    assert not any(_alive(p) for p in pids), f"processes left behind: {pids}"


def test_a_native_run_passes_with_the_records_keys_of_a_container_run(plant, tmp_path):
    folder, record = _native(plant, tmp_path, "ok")
    assert (record["status"], record["cause"], record["exit_code"]) == ("ok", None, 0)
    assert record["rate"] > 0 and record["runtime"] == "native"
    request = record["process_request"]
    assert request["command"] == [sys.executable, "main.py"] and request["cwd"] == str((plant / "plant").resolve())
    assert request["env"]["MILABOX_RESULTS"] == str((folder / "plant" / "r0-dall").resolve())
    assert json.loads(request["env"]["MILABOX_CONFIG"])["steps"] == 5 and request["env"]["PLANT_MODE"] == "ok"

    engine = FakeEngine(images={benchmark_tag("plant", CPU)})  # the same benchmark through the container path
    engine.script("plant", ok())
    docker = run(engine, load_group(plant / "plant"), CPU, RunOptions(run_dir=tmp_path / "docker",
                                                                      telemetry_interval_s=0))
    container_record = json.loads((docker / "plant" / "r0-dall" / RECORD_NAME).read_text())
    assert set(record) - {"process_request", "runtime"} == set(container_record) - {"container_request"}

    loaded = load_run(folder)
    assert [a.record.status for a in loaded.attempts] == ["ok"] and loaded.manifest.status == "complete"
    assert json.loads((folder / MANIFEST_NAME).read_text())["runtime"] == "native"
    provenance = json.loads((folder / PROVENANCE_NAME).read_text())
    assert provenance["runtime"] == "native" and provenance["engine"] is None
    assert provenance["native"]["python_executable"] == sys.executable
    assert any(p.startswith("pytest==") for p in provenance["native"]["packages"])


def test_a_crash_is_a_failed_row_with_its_error(plant, tmp_path):
    _, record = _native(plant, tmp_path, "crash")
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["cause"].startswith("exit code 1: ") and "planted crash" in record["cause"]


def test_a_timeout_kills_the_whole_process_group(plant, tmp_path):
    folder, record = _native(plant, tmp_path, "sleep", timeout_s=3)
    assert record["status"] == "failed" and record["timed_out"] and record["exit_code"] is None
    assert record["cause"] == "timed out after 3 s (killed)"
    assert record["wall_s"] < 30
    _no_process_left(folder / "plant" / "r0-dall")


def test_a_memory_limit_is_refused_in_one_line(plant, tmp_path):
    with pytest.raises(ConfigError, match=r"^--memory 1g: .*cannot be enforced with --runtime native"):
        _native(plant, tmp_path, "ok", memory="1g")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_stops_the_process_and_records_interrupted_without_an_engine(plant, tmp_path):
    run_dir = tmp_path / "run"
    attempt = run_dir / "plant" / "r0-dall"
    env = {**os.environ, "MILABOX_BENCHMARKS": str(plant), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = subprocess.Popen([*MILABOX, "run", "plant", "--runtime", "native", "--env", "PLANT_MODE=sleep",
                             "--run-dir", str(run_dir), "--telemetry-interval", "0"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (attempt / "child.pid").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (attempt / "child.pid").exists(), "the planted benchmark never started"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    record = json.loads((attempt / RECORD_NAME).read_text())
    assert record["status"] == "interrupted" and record["exit_code"] is None
    assert json.loads((run_dir / MANIFEST_NAME).read_text())["status"] == "interrupted"
    _no_process_left(attempt)
