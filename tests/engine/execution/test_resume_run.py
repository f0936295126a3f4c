"""A run stopped by Ctrl-C after its first benchmark is finished by `--resume`, without running the first again."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from helpers import MILABOX

pytestmark = pytest.mark.engine


def test_ctrl_c_after_the_first_benchmark_then_resume_runs_only_the_rest(engine, cpu_images, tmp_path):
    folder = tmp_path / "run"
    proc = subprocess.Popen([*MILABOX, "run", "bert-fp32", "matmul-fp32", "--run-dir", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = folder / "bert-fp32" / "r0-dall" / "record.json"  # the suite's order: bert before matmul
    deadline = time.monotonic() + 180
    # Stop once the first benchmark's record is final and the second one's container is up.
    while time.monotonic() < deadline and proc.poll() is None and not (
            first.exists() and json.loads(first.read_text())["status"] == "ok" and (folder / "matmul-fp32").exists()
            and engine.containers()):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = first.read_text()

    resumed = subprocess.run([*MILABOX, "run", "--resume", str(folder)], capture_output=True, text=True, timeout=300,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert first.read_text() == kept  # the first benchmark was not run again
    assert [p.name for p in (folder / "bert-fp32").iterdir()] == ["r0-dall"]
    records = [json.loads(p.read_text()) for p in (folder / "matmul-fp32").glob("*/record.json")]
    assert sorted(r["status"] for r in records) == ["interrupted", "ok"]  # the interrupted attempt kept, then retried
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1
    report = subprocess.run([*MILABOX, "report", str(folder), "--format", "json"], capture_output=True, text=True,
                            check=True)
    rows = {row["name"]: row for row in json.loads(report.stdout)["benchmarks"]}
    assert rows["matmul-fp32"]["n"] == 1 and rows["matmul-fp32"]["fail"] == 0  # the resumed run reads as one run
    assert engine.containers() == []
