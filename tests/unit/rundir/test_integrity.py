"""Corrupt or suspicious run-folder content is counted and shown, never silent, never fatal."""

from __future__ import annotations

import json

from runfolders import T0, write_attempt, write_manifest

from milabox.reporting.formats import format_report
from milabox.reporting.summary import summarize
from milabox.rundir.read import load_run


def test_corrupt_event_line_is_a_warning_on_the_row(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    folder = write_attempt(run, "b", rate=10.0, steps=[10.0, 10.0], tail='{"event": "rate", "ti')
    summary = summarize(load_run(run))
    (row,) = summary.benchmarks
    assert row.perf == 10.0 and row.warnings == [f"r0-d0: 1 corrupt line(s) in {folder / 'events.jsonl'} (skipped)"]
    table = format_report(summary, "table")
    assert "b !" in table and f"! b: r0-d0: 1 corrupt line(s) in {folder / 'events.jsonl'}" in table
    assert json.loads(format_report(summary, "json"))["benchmarks"][0]["warnings"] == row.warnings


def test_event_after_the_summary_is_counted_and_ignored(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    late = json.dumps({"event": "rate", "time": T0 + 20, "step": 9, "value": 1e6, "unit": "items/s"})
    write_attempt(run, "b", rate=10.0, steps=[10.0, 12.0], extra_lines=[late])
    (attempt,) = load_run(run).attempts
    assert attempt.step_rates == [10.0, 12.0] and attempt.late_events == 1
    (row,) = summarize(load_run(run)).benchmarks
    assert row.warnings and "1 event(s) after the summary" in row.warnings[0]
    assert row.jitter_pct < 20  # the late 1e6 did not reach any statistic


def test_corrupt_record_is_a_failed_row_and_the_report_still_prints(tmp_path):
    run = write_manifest(tmp_path / "run", ["good", "bad"])
    write_attempt(run, "good", rate=5.0)
    folder = write_attempt(run, "bad", rate=5.0, record_text='{"format": 1, "bench')
    write_attempt(run, "bad", 1, rate=7.0)
    summary = summarize(load_run(run))
    bad = next(b for b in summary.benchmarks if b.name == "bad")
    assert (bad.n, bad.fail, bad.perf, bad.weight, bad.unit) == (2, 1, 7.0, 1.0, "items/s")
    (failure,) = summary.failures
    assert str(folder / "record.json") in failure.cause and "not valid JSON" in failure.cause
    table = format_report(summary, "table")
    assert "good" in table and str(folder / "record.json") in table


def test_only_unreadable_records_zero_the_score_with_the_cause(tmp_path):
    run = write_manifest(tmp_path / "run", ["good", "bad"])
    write_attempt(run, "good", rate=5.0)
    folder = write_attempt(run, "bad", rate=5.0)
    (folder / "record.json").unlink()
    summary = summarize(load_run(run))
    assert summary.score == 0.0 and summary.zeroed_by == ["bad"]
    assert "record.json: missing" in summary.failures[0].cause


def test_attempts_that_disagree_on_unit_or_weight_are_flagged(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    write_attempt(run, "b", 0, rate=1.0, weight=1.0)
    write_attempt(run, "b", 1, rate=1.0, weight=0.5)
    (row,) = summarize(load_run(run)).benchmarks
    assert row.warnings == ["attempts disagree on weight (0.5, 1); shown: 1.0"]


def test_manifest_excluded_and_overrides_are_read(tmp_path):
    run = write_manifest(tmp_path / "run", ["a"], excluded={"c": "GPU only"}, overrides={"batch_size": 2})
    m = load_run(run).manifest
    assert m.excluded == {"c": "GPU only"} and m.overrides == {"batch_size": 2}
    assert load_run(run).setup["overrides"] == {"batch_size": 2}


def test_a_run_records_what_the_vendor_excluded_and_the_report_names_it(tmp_path):
    # The fake engine (tests/fakes.py) stands in for Docker; the manifest is the real one local.run writes.
    from fakes import FakeEngine

    from milabox.definitions.benchmarks import all_benchmarks
    from milabox.definitions.vendors import get_vendor
    from milabox.execution.local import run
    from milabox.execution.plan import RunOptions
    from milabox.images.naming import benchmark_tag

    cpu, benches = get_vendor("cpu"), all_benchmarks()
    chosen = [benches["matmul-fp32"], benches["matmul-tf32"]]
    engine = FakeEngine(images={benchmark_tag("matmul", cpu)})
    folder = run(engine, chosen, cpu, RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0,
                                                 command=("milabox", "run")))
    loaded = load_run(folder)
    assert loaded.manifest.excluded == {"matmul-tf32": benches["matmul-tf32"].excluded_vendors["cpu"]}
    assert "excluded: matmul-tf32 [" in format_report(summarize(loaded), "table")
