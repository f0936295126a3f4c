"""A resumed run is one run: the failed attempt `--resume` retried is left out of report and compare, also after
it travelled in a results pack."""

from __future__ import annotations

import json

from runfolders import write_attempt, write_manifest

from milabox.reporting.compare import compare
from milabox.reporting.summary import summarize
from milabox.rundir.read import load_run
from milabox.shipping.resultspack import import_results, pack_results


def _resumed_run(run_dir):
    """matmul r0 failed, then `--resume` retried it as r1, which passed; bert r0 passed the first time."""
    write_manifest(run_dir, ["matmul-fp32", "bert-fp32"], repeat=1)
    old = write_attempt(run_dir, "matmul-fp32", 0, status="failed", cause="exit code 1", rate=None)
    record = json.loads((old / "record.json").read_text())
    (old / "record.json").write_text(json.dumps({**record, "superseded_by": "matmul-fp32/r1-d0"}))
    retry = write_attempt(run_dir, "matmul-fp32", 1, rate=4.0, steps=(4.0, 4.0))
    record = json.loads((retry / "record.json").read_text())
    (retry / "record.json").write_text(json.dumps({**record, "retry_of": "matmul-fp32/r0-d0"}))
    write_attempt(run_dir, "bert-fp32", 0, rate=2.0, steps=(2.0, 2.0))
    return run_dir


def test_a_superseded_attempt_is_kept_apart_and_not_counted(tmp_path):
    run = load_run(_resumed_run(tmp_path / "run"))
    assert [a.name for a in run.attempts if a.benchmark == "matmul-fp32"] == ["r1-d0"]
    assert [(a.benchmark, a.name, a.record.status) for a in run.superseded] == [("matmul-fp32", "r0-d0", "failed")]
    rows = {b.name: b for b in summarize(run).benchmarks}
    assert (rows["matmul-fp32"].n, rows["matmul-fp32"].fail) == (1, 0)
    assert not summarize(run).failures


def test_a_resumed_run_reads_as_one_run_after_a_results_pack(tmp_path):
    run_dir = _resumed_run(tmp_path / "run")
    pack_results(run_dir, tmp_path / "results.tar")
    imported = load_run(import_results(tmp_path / "results.tar", tmp_path / "in").run_dir)
    assert [a.name for a in imported.superseded] == ["r0-d0"]
    result = compare([load_run(run_dir), imported])
    (row,) = [row for row in result.rows if row.name == "matmul-fp32"]
    assert [(c.summary.n, c.summary.fail, c.status) for c in row.cells] == [(1, 0, "ok"), (1, 0, "ok")]
