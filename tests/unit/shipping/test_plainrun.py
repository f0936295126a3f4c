"""A folder written by a plain `docker run IMAGE run ROW` (no milabox there) becomes a run folder milabox reports."""

from __future__ import annotations

import json
import tarfile

import pytest
from helpers import milabox

from milabox.errors import ShipError
from milabox.reporting.formats import format_report
from milabox.reporting.summary import summarize
from milabox.rundir.read import load_run
from milabox.shipping.plainrun import adopt_plain_run


def _plain_results(folder, *, end="ok", vendor="cpu", rate=0.125):
    """The events the in-container runtime writes (milabox_runtime/run.py), as a plain docker run leaves them."""
    folder.mkdir(parents=True)
    lines = [{"event": "start", "time": 1796191625.7, "benchmark": "matmul-fp32", "size": "smoke", "pid": 1,
              "group": "matmul", "vendor": vendor},
             {"event": "meta", "time": 1796191627.6, "torch": "2.13.0+cpu", "device": {"type": "cpu"}}]
    lines += [{"event": "rate", "time": 1796191627.7 + i / 100, "step": i, "value": rate, "unit": "TFLOPS",
               "items": 0.001, "seconds": 0.008} for i in range(5)]
    if end == "ok":
        lines.append({"event": "summary", "time": 1796191627.9, "rate": rate, "unit": "TFLOPS", "items": 0.005,
                      "seconds": 0.04, "steps": 5, "warmup": 0, "stopped_by": "steps"})
    if end is not None:
        lines.append({"event": "end", "time": 1796191627.95, "status": end,
                      "error": None if end == "ok" else "planted: tensor shapes disagree"})
    (folder / "events.jsonl").write_text("".join(json.dumps(obj) + "\n" for obj in lines))
    return folder


def test_a_plain_run_folder_is_adopted_and_reported(tmp_path):
    run_dir = adopt_plain_run(_plain_results(tmp_path / "out"), tmp_path / "runs")
    run = load_run(run_dir)
    assert run.manifest.vendor == "cpu" and run.manifest.benchmarks == ["matmul-fp32"]
    (attempt,) = run.attempts
    assert attempt.record.status == "ok" and attempt.rate == pytest.approx(0.125)
    assert attempt.record.unit == "TFLOPS"  # from the definitions the host knows
    assert "matmul-fp32" in format_report(summarize(run), "table")


def test_a_tar_of_it_works_and_a_failed_or_cut_run_is_a_failed_row(tmp_path):
    folder = _plain_results(tmp_path / "out", end="failed")
    with tarfile.open(tmp_path / "out.tar", "w") as tar:
        tar.add(folder, arcname="results")
    failed = load_run(adopt_plain_run(tmp_path / "out.tar", tmp_path / "runs")).attempts[0].record
    assert failed.status == "failed" and "planted: tensor shapes disagree" in failed.cause
    cut = load_run(adopt_plain_run(_plain_results(tmp_path / "cut", end=None), tmp_path / "runs2")).attempts[0].record
    assert cut.status == "failed" and "without an end event" in cut.cause


def test_what_is_not_a_plain_run_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShipError, match="no events.jsonl"):
        adopt_plain_run(tmp_path / "empty", tmp_path / "runs")
    with pytest.raises(ShipError, match="pass --vendor"):
        adopt_plain_run(_plain_results(tmp_path / "novendor", vendor=None), tmp_path / "runs")
    adopt_plain_run(_plain_results(tmp_path / "twice"), tmp_path / "runs")
    with pytest.raises(ShipError, match="already exists"):
        adopt_plain_run(tmp_path / "twice", tmp_path / "runs")
    proc = milabox("results", "adopt", str(tmp_path / "empty"), "--into", str(tmp_path / "runs"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
