"""Reading run folders (milabox.results) and reporting on them (milabox.report).

Every test writes a real run folder on disk in the layout of docs/results-format.md; expected
numbers are worked out by hand in the test, not with the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

import pytest
from runfolders import T0, write_attempt, write_manifest, write_telemetry

from milabox.errors import MilaboxError, ResultsError
from milabox.reporting.formats import COLUMNS, CSV_COLUMNS, FORMATS, format_report
from milabox.reporting.summary import summarize
from milabox.rundir.layout import write_json_atomic
from milabox.rundir.read import SKIPPED_BY_REPORTS, load_attempt, load_run


def bench_row(summary, name):
    (row,) = [b for b in summary.benchmarks if b.name == name]
    return row


# ------------------------------------------------------------------------------------------
# Loading


def test_load_run_reads_manifest_attempts_and_events(tmp_path):
    run = write_manifest(tmp_path / "run", ["b-fp32"])
    write_attempt(run, "b-fp32", 1, "0", rate=5.0, steps=[4.0, 6.0], peak_mb=12.5)
    write_attempt(run, "b-fp32", 0, "1", rate=7.0)
    write_attempt(run, "b-fp32", 0, "0", rate=6.0)
    (run / "b-fp32" / "notes").mkdir()  # not an attempt folder: ignored
    (run / "stray.txt").write_text("x")

    loaded = load_run(run)
    assert loaded.manifest.benchmarks == ["b-fp32"]
    assert loaded.manifest.status == "complete"
    assert [a.name for a in loaded.attempts] == ["r0-d0", "r0-d1", "r1-d0"]
    last = loaded.attempts[-1]
    assert last.record.ok and last.record.device == "0" and last.record.repeat == 1
    assert last.rate == 5.0
    assert last.step_rates == [4.0, 6.0]
    assert last.peak_memory_mb == 12.5
    assert [e.kind for e in last.events][:2] == ["start", "meta"]
    assert last.skipped_lines == 0


def test_truncated_last_line_is_tolerated(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    # Container killed mid-write: the last line stops inside a JSON object (and a UTF-8 char).
    cut = '{"event": "summary", "time": 1.0, "rate": 9'
    write_attempt(run, "b", status="failed", steps=[3.0, 5.0], peak_mb=7.0, cause="timed out after 600 s", tail=cut)
    folder = run / "b" / "r0-d0"
    with open(folder / "events.jsonl", "ab") as fh:
        fh.write(b'\n{"event": "loss", "value": "\xc3')

    (attempt,) = load_run(run).attempts
    assert attempt.skipped_lines == 2
    assert attempt.summary is None
    assert attempt.step_rates == [3.0, 5.0]
    assert attempt.peak_memory_mb == 7.0


def test_unknown_event_kinds_and_fields_are_ignored(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    write_attempt(
        run,
        "b",
        rate=10.0,
        steps=[10.0, 10.0],
        extra_lines=[
            json.dumps({"event": "gpu_temp", "time": T0, "celsius": 70}),
            json.dumps({"event": "rate", "time": T0, "step": 9, "value": 10.0, "unit": "items/s", "new_field": [1, 2]}),
            json.dumps({"event": "memory", "time": T0, "peak_mb": 3.0, "reserved_mb": 1e9}),
            json.dumps({"no_event_key": True}),
            json.dumps([1, 2, 3]),
            "",
        ],
    )
    summary = summarize([load_run(run)])
    row = bench_row(summary, "b")
    assert row.perf == 10.0
    assert row.jitter_pct == 0.0  # the two step rates before the summary; the late one did not count
    assert row.peak_memory_mb == 3.0
    (attempt,) = load_run(run).attempts
    assert "gpu_temp" in [e.kind for e in attempt.events]
    assert attempt.skipped_lines == 2  # the object without "event" and the array
    assert attempt.step_rates == [10.0, 10.0] and attempt.late_events == 3  # gpu_temp, rate, memory after "end"
    assert len(row.warnings) == 2  # the corrupt lines and the late events, each named on the row


@pytest.mark.parametrize(
    "record_text, problem",
    [
        ('{"format": 1, "benchmark": ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            json.dumps(
                {
                    "format": 1,
                    "benchmark": "b",
                    "repeat": 0,
                    "device": "0",
                    "plan": "per_device",
                    "unit": "items/s",
                    "weight": 1.0,
                }
            ),
            "field 'status' is missing",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "benchmark": "b",
                    "repeat": 0,
                    "device": "0",
                    "plan": "per_device",
                    "unit": "items/s",
                    "weight": "heavy",
                    "status": "ok",
                }
            ),
            "field 'weight'",
        ),
        (
            json.dumps(
                {
                    "format": 7,
                    "benchmark": "b",
                    "repeat": 0,
                    "device": "0",
                    "plan": "per_device",
                    "unit": "items/s",
                    "weight": 1.0,
                    "status": "ok",
                }
            ),
            "format 7 is newer",
        ),
    ],
)
def test_malformed_record_raises_results_error_naming_the_file(tmp_path, record_text, problem):
    run = write_manifest(tmp_path / "run", ["b"])
    folder = write_attempt(run, "b", rate=1.0, record_text=record_text)
    with pytest.raises(ResultsError) as info:
        load_attempt(folder)
    (attempt,) = load_run(run).attempts  # the whole run still reads: this attempt is a failed one
    assert attempt.error == str(info.value) and not attempt.record.ok
    message = str(info.value)
    assert isinstance(info.value, MilaboxError)
    assert str(folder / "record.json") in message
    assert problem in message
    assert "\n" not in message


def test_missing_record_raises(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    folder = write_attempt(run, "b", rate=1.0)
    (folder / "record.json").unlink()
    with pytest.raises(ResultsError, match="record.json: missing"):
        load_attempt(folder)
    (attempt,) = load_run(run).attempts
    assert "record.json: missing" in attempt.record.cause and attempt.record.status == "failed"


@pytest.mark.parametrize(
    "text, problem",
    [(None, "missing"), ("{oops", "not valid JSON"), ('{"format": 1, "status": "complete"}', "'benchmarks'")],
)
def test_missing_or_malformed_manifest_raises(tmp_path, text, problem):
    run = tmp_path / "run"
    run.mkdir()
    if text is not None:
        (run / "manifest.json").write_text(text)
    with pytest.raises(ResultsError) as info:
        load_run(run)
    assert str(run / "manifest.json") in str(info.value)
    assert problem in str(info.value)


def test_not_a_folder_raises(tmp_path):
    with pytest.raises(ResultsError, match="not a run folder"):
        load_run(tmp_path / "nope")


# ------------------------------------------------------------------------------------------
# Summary math


def test_perf_fail_std_sem_and_per_device_multiplier(tmp_path):
    run = write_manifest(tmp_path / "run", ["m"])
    write_attempt(run, "m", 0, "0", rate=100.0, peak_mb=10.0)
    write_attempt(run, "m", 0, "1", rate=110.0, peak_mb=30.0)
    write_attempt(run, "m", 1, "0", rate=90.0, peak_mb=20.0)
    write_attempt(run, "m", 1, "1", status="failed", peak_mb=40.0, cause="out of memory (OOM-killed)")
    summary = summarize([load_run(run)])
    row = bench_row(summary, "m")

    # rates 100, 110, 90: mean 100; deviations 0, 10, -10 -> sample variance 200/2 = 100, std 10.
    assert (row.n, row.fail) == (4, 1)
    assert row.perf == pytest.approx(100.0)
    assert row.std_pct == pytest.approx(10.0)
    assert row.sem_pct == pytest.approx(10.0 / math.sqrt(3))
    assert row.peak_memory_mb == 40.0  # the failed attempt's peak counts too
    # two distinct devices (per_device), 1 failure in 4 attempts: 100 * 2 * 0.75
    assert row.score == pytest.approx(150.0)
    assert row.unit == "items/s" and row.weight == 1.0
    assert summary.failure_rate == pytest.approx(0.25)
    assert summary.score == pytest.approx(150.0)
    assert summary.incomplete == []
    (failure,) = summary.failures
    assert (failure.benchmark, failure.attempt, failure.cause) == ("m", "r1-d1", "out of memory (OOM-killed)")


def test_single_success_has_jitter_but_no_spread(tmp_path):
    run = write_manifest(tmp_path / "run", ["s"])
    write_attempt(run, "s", rate=11.5, steps=[10.0, 12.0, 14.0])
    row = bench_row(summarize([load_run(run)]), "s")
    # steps mean 12, deviations -2, 0, 2 -> variance 8/2 = 4, std 2 -> 2/12 = 16.67 %
    assert row.perf == 11.5  # perf is the summary rate, not the step mean
    assert row.jitter_pct == pytest.approx(100 * 2 / 12)
    assert row.std_pct is None and row.sem_pct is None  # one attempt: no run-to-run spread


def test_spread_not_computable(tmp_path):
    run = write_manifest(tmp_path / "run", ["one-step", "none"])
    write_attempt(run, "one-step", rate=5.0, steps=[5.0])
    write_attempt(run, "none", status="failed", cause="no rate reported")
    summary = summarize([load_run(run)])
    one = bench_row(summary, "one-step")
    assert one.std_pct is None and one.sem_pct is None
    none = bench_row(summary, "none")
    assert none.perf is None and none.score == 0 and none.std_pct is None and none.peak_memory_mb is None


def test_non_per_device_plan_has_no_device_multiplier(tmp_path):
    run = write_manifest(tmp_path / "run", ["all", "single"])
    write_attempt(run, "all", 0, "all", rate=40.0, plan="all_devices")
    write_attempt(run, "all", 1, "all", rate=60.0, plan="all_devices")
    write_attempt(run, "single", 0, "0", rate=8.0, plan="single")
    write_attempt(run, "single", 0, "1", rate=8.0, plan="single")
    summary = summarize([load_run(run)])
    assert bench_row(summary, "all").score == pytest.approx(50.0)
    assert bench_row(summary, "single").score == pytest.approx(8.0)  # D = 1 despite two devices


def test_suite_score_is_weighted_geometric_mean_and_incomplete(tmp_path):
    run = write_manifest(tmp_path / "run", ["a", "b", "broken", "unweighted", "never-ran"], status="interrupted")
    write_attempt(run, "a", rate=10.0, weight=1.0)
    write_attempt(run, "b", rate=1000.0, weight=3.0)
    write_attempt(run, "broken", status="failed", weight=2.0, cause="exit code 1: RuntimeError: boom")
    write_attempt(run, "unweighted", status="failed", weight=0.0, cause="timed out after 600 s")
    summary = summarize([load_run(run)])

    assert summary.score == 0.0  # a weighted row at 0 zeroes the suite score
    # a weighted benchmark with score 0, and one the manifest lists but that never ran
    assert summary.incomplete == ["broken", "never-ran"] == summary.zeroed_by
    assert summary.rows == ["a", "b", "broken", "never-ran"]
    assert [b.name for b in summary.benchmarks] == ["a", "b", "broken", "unweighted", "never-ran"]
    never = bench_row(summary, "never-ran")
    assert (never.n, never.fail, never.perf, never.weight, never.score) == (0, 0, None, None, 0)
    assert summary.failure_rate == pytest.approx(2 / 4)


def test_several_runs_are_pooled(tmp_path):
    run1 = write_manifest(tmp_path / "run1", ["p"])
    run2 = write_manifest(tmp_path / "run2", ["p"])
    write_attempt(run1, "p", rate=2.0)
    write_attempt(run2, "p", rate=4.0)
    write_attempt(run2, "p", 1, "0", status="interrupted", cause="interrupted by the user")
    summary = summarize([load_run(run1), load_run(run2)])
    row = bench_row(summary, "p")
    assert (row.n, row.fail) == (3, 1)
    assert row.perf == pytest.approx(3.0)
    assert row.score == pytest.approx(3.0 * 1 * (2 / 3))  # one device ("0") in both runs
    assert summary.failures[0].attempt == "run2/r1-d0"


# ------------------------------------------------------------------------------------------
# Rendering


@pytest.fixture
def mixed_summary(tmp_path):
    run = write_manifest(tmp_path / "run", ["fast", "slow", "broken"])
    write_attempt(run, "fast", 0, "0", rate=1234.5678, steps=[1200.0, 1300.0], peak_mb=2048.4)
    write_attempt(run, "fast", 0, "1", rate=1234.5678, peak_mb=1024.0)
    write_attempt(run, "slow", rate=12.3456, steps=[12.0, 12.5, 12.6], unit="tokens/s", weight=2.0)
    write_attempt(run, "broken", status="failed", cause="exit code 1: RuntimeError: a|b")
    return summarize([load_run(run)])


def test_table_and_markdown_render(mixed_summary):
    table = format_report(mixed_summary, "table")
    assert "fast" in table and "slow" in table and "broken" in table
    assert "1235" in table and "12.35" in table  # perf to 4 significant digits
    assert "2048" in table  # peak memory, whole MB
    assert "Failures:" in table and "r0-d0" in table and "RuntimeError: a|b" in table
    last = table.rstrip("\n").splitlines()[-1]
    assert last.startswith("Score: 0 ") and "zeroed by: broken" in last
    assert "Failure rate: 25.0%" in last

    md = format_report(mixed_summary, "markdown")
    assert "| fast" in md and "|--" in md.replace(":", "-")
    assert "Failures:" in md and r"RuntimeError: a\|b" in md  # pipe escaped inside the table
    assert "zeroed by: broken" in md.rstrip("\n").splitlines()[-1]


def test_json_has_the_core_keys_first(mixed_summary):
    # Format 2 (docs/report-schema.md): the core keys, in this order, then plan, devices, stats, energy, ratio.
    doc = json.loads(format_report(mixed_summary, "json"))
    assert doc["format"] == 4
    assert {"benchmarks", "score", "failure_rate", "incomplete", "format"} <= set(doc)
    assert doc["incomplete"] == ["broken"]
    assert doc["failure_rate"] == pytest.approx(0.25)
    for obj in doc["benchmarks"]:
        assert list(obj)[: len(COLUMNS)] == list(COLUMNS)
        assert list(obj)[len(COLUMNS):] == ["plan", "devices", "stats", "energy", "ratio", "baseline_perf",
                                            "jitter_pct", "warnings", "device_rates", "node_rate", "spread"]
        assert set(list(obj)[: len(COLUMNS)]) == {
            "name",
            "n",
            "fail",
            "perf",
            "unit",
            "sem_pct",
            "std_pct",
            "peak_memory_mb",
            "weight",
            "score",
        }
    fast = doc["benchmarks"][0]
    assert fast["name"] == "fast" and fast["perf"] == pytest.approx(1234.5678)
    assert fast["score"] == pytest.approx(2 * 1234.5678)
    assert doc["score"] == 0.0 and doc["zeroed_by"] == ["broken"]
    assert doc["coverage"] == {"rows": ["fast", "slow", "broken"], "excluded": {}}


def test_csv_parses_back(mixed_summary):
    rows = list(csv.DictReader(io.StringIO(format_report(mixed_summary, "csv"))))
    assert [r["name"] for r in rows] == ["fast", "slow", "broken"]
    assert list(rows[0])[: len(COLUMNS)] == list(COLUMNS)  # the core columns first, then the details
    assert list(rows[0]) == list(CSV_COLUMNS)
    # slow: one attempt -> its median is its rate, no interval
    assert float(rows[1]["median"]) == pytest.approx(12.3456) and rows[1]["stats_source"] == "attempts"
    assert rows[1]["ci95_low"] == "" and float(rows[1]["jitter_pct"]) > 0
    assert rows[2]["median"] == "" and rows[2]["ratio"] == ""
    assert float(rows[1]["perf"]) == pytest.approx(12.3456)
    assert rows[1]["unit"] == "tokens/s"
    assert rows[2]["perf"] == "" and rows[2]["fail"] == "1" and float(rows[2]["score"]) == 0


def test_every_format_renders_an_empty_summary(tmp_path):
    summary = summarize([load_run(write_manifest(tmp_path / "run", []))])
    assert summary.score is None and summary.failure_rate is None
    for fmt in FORMATS:
        assert format_report(summary, fmt).endswith("\n")


def test_unknown_format_is_a_user_error(mixed_summary):
    with pytest.raises(MilaboxError, match="unknown report format"):
        format_report(mixed_summary, "xml")


# ------------------------------------------------------------------------------------------
# Writing


def test_write_json_atomic(tmp_path):
    target = tmp_path / "record.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 2, "b": [1, 2]}
    assert os.listdir(tmp_path) == ["record.json"]  # no temporary file left
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 2, "b": [1, 2]}  # old content intact
    assert os.listdir(tmp_path) == ["record.json"]


# ------------------------------------------------------------------------------------------
# Statistics, baseline, energy (format 2)

# Student t quantiles from printed tables (two-sided 95 %): df = 2 and df = 3.
T_975_DF2 = 4.302652729749464




def test_stats_over_attempts_mean_median_std_sem_ci(tmp_path):
    run = write_manifest(tmp_path / "run", ["m"])
    for repeat, rate in enumerate([100.0, 110.0, 90.0]):
        write_attempt(run, "m", repeat, "0", rate=rate, steps=[1.0, 500.0])  # steps ignored: k >= 2 attempts
    row = bench_row(summarize(load_run(run)), "m")
    s = row.stats
    assert s.source == "attempts" and s.n == 3
    assert (s.mean, s.median) == (pytest.approx(100.0), 100.0)
    assert s.std == pytest.approx(10.0) and s.sem == pytest.approx(10 / math.sqrt(3))
    half = T_975_DF2 * 10 / math.sqrt(3)  # 24.84
    assert (s.ci_low, s.ci_high) == (pytest.approx(100 - half), pytest.approx(100 + half))
    assert row.sem_pct == pytest.approx(100 * 10 / math.sqrt(3) / 100)
    table = format_report(summarize(load_run(run)), "table")
    assert "[75.16, 124.8]" in table  # the 95 % interval, 4 significant digits
    doc = json.loads(format_report(summarize(load_run(run)), "json"))
    stats = doc["benchmarks"][0]["stats"]
    assert stats["source"] == "attempts" and stats["n"] == 3 and stats["median"] == 100.0
    assert stats["ci95"] == [pytest.approx(100 - half), pytest.approx(100 + half)] and stats["confidence"] == 0.95


def test_stats_of_one_attempt_have_no_interval_and_show_n1(tmp_path):
    run = write_manifest(tmp_path / "run", ["s"])
    write_attempt(run, "s", rate=11.0, steps=[10.0, 12.0, 14.0, 8.0])
    summary = summarize(load_run(run))
    s = bench_row(summary, "s").stats
    assert s.source == "attempts" and s.n == 1 and s.mean == 11.0
    assert s.std is None and s.sem is None and s.ci_low is None and s.ci_high is None
    # the steps' jitter: mean 11, deviations -1 1 3 -3: variance 20/3
    assert bench_row(summary, "s").jitter_pct == pytest.approx(100 * math.sqrt(20 / 3) / 11)
    line = next(x for x in format_report(summary, "table").splitlines() if x.startswith("s "))
    assert "n=1" in line and "[" not in line


def test_baseline_ratios_and_suite_geomean_of_ratios(tmp_path):
    base = write_manifest(tmp_path / "base", ["a", "b", "c", "d"])
    write_attempt(base, "a", rate=10.0, weight=1.0)
    write_attempt(base, "b", rate=100.0, weight=3.0)
    write_attempt(base, "c", rate=5.0, weight=1.0)  # never run in the new run
    write_attempt(base, "d", rate=2.0, weight=0.0)
    new = write_manifest(tmp_path / "new", ["a", "b", "d", "e"])
    write_attempt(new, "a", rate=20.0, weight=1.0)
    write_attempt(new, "b", rate=50.0, weight=3.0)
    write_attempt(new, "d", rate=4.0, weight=0.0)
    write_attempt(new, "e", rate=7.0, weight=1.0)  # not in the baseline
    summary = summarize(load_run(new), summarize(load_run(base)), "base")

    ratios = {b.name: b.ratio for b in summary.benchmarks}
    assert ratios == {"a": pytest.approx(2.0), "b": pytest.approx(0.5), "d": pytest.approx(2.0), "e": None,
                      "c": 0.0}
    assert [b.name for b in summary.benchmarks] == ["a", "b", "d", "e", "c"]
    # c, weighted and in the baseline, did not run here: it zeroes the score against the baseline
    assert summary.baseline.score == 0.0 and summary.baseline.zeroed_by == ["c"]
    assert summary.baseline.incomplete == ["e", "c"]
    assert summary.baseline.incomplete_reasons == {"e": "not in the baseline", "c": "not run"}
    assert bench_row(summary, "c").weight == 1.0  # taken from the baseline
    lines = format_report(summary, "table").rstrip("\n").splitlines()
    assert lines[-3] == "Against baseline base: 0x (zeroed by: c [not run]) (left out: e [not in the baseline])"
    assert "ratio" in format_report(summary, "table")
    doc = json.loads(format_report(summary, "json"))
    assert doc["baseline"]["score"] == 0.0 and doc["baseline"]["label"] == "base"
    # without c: (1 ln 2 + 3 ln 0.5) / 4 = -ln 2 / 2; the weightless d and e (no baseline rate) do not count
    write_attempt(new, "c", rate=5.0, weight=1.0)
    again = summarize(load_run(new), summarize(load_run(base)), "base")
    assert again.baseline.score == pytest.approx((2 * 0.5 ** 3) ** 0.2) and again.baseline.zeroed_by == []
    assert doc["benchmarks"][0]["ratio"] == pytest.approx(2.0) and doc["benchmarks"][0]["baseline_perf"] == 10.0


def test_baseline_ratio_counts_devices_and_failures(tmp_path):
    base = write_manifest(tmp_path / "base", ["a"])
    write_attempt(base, "a", 0, "0", rate=10.0)
    new = write_manifest(tmp_path / "new", ["a"])
    write_attempt(new, "a", 0, "0", rate=10.0)
    write_attempt(new, "a", 0, "1", rate=10.0)
    write_attempt(new, "a", 1, "0", rate=10.0)
    write_attempt(new, "a", 1, "1", status="failed", cause="out of memory (OOM-killed)")
    row = bench_row(summarize(load_run(new), summarize(load_run(base))), "a")
    assert row.ratio == pytest.approx(10 * 2 * 0.75 / 10)  # two devices, one attempt in four failed


def test_failed_benchmark_names_its_reason_in_the_score_line(tmp_path):
    run = write_manifest(tmp_path / "run", ["ok", "broken"])
    write_attempt(run, "ok", rate=3.0)
    write_attempt(run, "broken", status="failed", cause="exit code 1")
    summary = summarize(load_run(run))
    assert summary.incomplete_reasons == {"broken": "all 1 attempt(s) failed"}
    assert "Score: 0 (zeroed by: broken [all 1 attempt(s) failed])" in format_report(summary, "table")


def test_energy_columns_from_telemetry(tmp_path):
    run = write_manifest(tmp_path / "run", ["hot", "cold"])
    # rate 10 -> summary seconds = 100 / 10 = 10; last step at T0 + 4: measured window [T0 - 6, T0 + 4]
    hot = write_attempt(run, "hot", rate=10.0, steps=[10.0] * 5)
    write_telemetry(hot, T0 - 20, T0 + 20, 200.0)
    write_attempt(run, "cold", rate=5.0, steps=[5.0, 5.0])  # no telemetry.jsonl
    summary = summarize(load_run(run))
    e = bench_row(summary, "hot").energy
    assert e.energy_kj == pytest.approx(200 * 10 / 1000)  # 10 s at 200 W
    assert e.mean_power_w == pytest.approx(200.0)
    assert e.items_per_j == pytest.approx(10 / 200)
    assert e.attempts == 1 and e.source == "counter"
    assert bench_row(summary, "cold").energy is None
    table = format_report(summary, "table")
    assert "energy kJ" in table and "power W" in table and "0.0500 items/J" in table
    doc = json.loads(format_report(summary, "json"))
    assert doc["benchmarks"][0]["energy"]["items_per_j"] == pytest.approx(0.05)
    assert doc["benchmarks"][1]["energy"] is None
    row = next(csv.DictReader(io.StringIO(format_report(summary, "csv"))))
    assert float(row["mean_power_w"]) == pytest.approx(200.0)


def test_energy_falls_back_to_the_whole_attempt_when_samples_miss_the_window(tmp_path):
    run = write_manifest(tmp_path / "run", ["m"])
    folder = write_attempt(run, "m", rate=10.0, steps=[10.0] * 5, unit="TFLOPS")
    write_telemetry(folder, T0 + 5, T0 + 9, 50.0, counter=False)  # after the measured window
    e = bench_row(summarize(load_run(run)), "m").energy
    assert e.mean_power_w == pytest.approx(50.0) and e.source == "power"
    assert e.energy_kj == pytest.approx(50 * 4 / 1000)
    assert "TFLOP/J" in format_report(summarize(load_run(run)), "table")


def test_no_energy_columns_without_telemetry(mixed_summary):
    assert "energy kJ" not in format_report(mixed_summary, "table")
    assert all(b["energy"] is None for b in json.loads(format_report(mixed_summary, "json"))["benchmarks"])


def test_attempt_exposes_window_meta_config_environment(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    folder = write_attempt(run, "b", rate=10.0, steps=[10.0, 10.0, 10.0])
    record = json.loads((folder / "record.json").read_text())
    record["container_request"] = {"environment": {"MILABOX_CONFIG": '{"batch_size": 8}', "OMP_NUM_THREADS": "1"}}
    (folder / "record.json").write_text(json.dumps(record))
    (attempt,) = load_run(run).attempts
    assert attempt.measured_window == (pytest.approx(T0 + 2 - 10), T0 + 2)
    assert attempt.process_span == (T0, T0 + 12)
    assert attempt.meta["threads"] == 4 and attempt.meta["precision"] == "fp32"
    assert attempt.config == {"batch_size": 8}
    assert attempt.environment["OMP_NUM_THREADS"] == "1"
    assert attempt.rate_series == [(T0, 10.0), (T0 + 1, 10.0), (T0 + 2, 10.0)]


def test_events_with_a_blank_line_read_the_same_as_without(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    folder = write_attempt(run, "b", rate=10.0, steps=[9.0, 11.0])
    clean = [(e.kind, e.time, e.data) for e in load_run(run).attempts[0].events]
    text = (folder / "events.jsonl").read_text()
    (folder / "events.jsonl").write_text(text.replace("\n", "\n\n", 1))  # the slow, line-by-line path
    assert [(e.kind, e.time, e.data) for e in load_run(run).attempts[0].events] == clean


def test_sem_pct_of_matches_the_report(tmp_path):
    from milabox.stats import sem_pct_of

    assert sem_pct_of([5.0]) is None  # one attempt: no spread across repeats yet
    assert sem_pct_of([100.0, 110.0, 90.0]) == pytest.approx(10 / math.sqrt(3))
    # two rates a, b: sem% = |a - b| / (a + b) * 100
    assert sem_pct_of([3.0, 1.0]) == pytest.approx(50.0)


def test_t_quantile_table_matches_scipy():
    from scipy.special import stdtrit

    from milabox.stats import t_quantile

    for df in range(1, 200):  # the table (1..120) and beyond it
        assert t_quantile(df) == pytest.approx(float(stdtrit(df, 0.975)), rel=1e-13), df
    assert t_quantile(4, 0.99) == pytest.approx(float(stdtrit(4, 0.995)), rel=1e-13)
    assert t_quantile(2) == pytest.approx(T_975_DF2, rel=1e-13)


def test_skipped_kinds_are_left_out_whatever_the_line_layout(tmp_path):
    run = write_manifest(tmp_path / "run", ["b"])
    write_attempt(run, "b", rate=10.0, steps=[9.0, 11.0],
                  extra_lines=['{"time": 1.0, "event": "loss", "step": 5, "value": 0.5}'])  # "event" not first
    full = load_run(run).attempts[0]
    light = load_run(run, SKIPPED_BY_REPORTS).attempts[0]
    assert [e.kind for e in full.events].count("loss") == 3
    assert [e for e in full.events if e.kind != "loss"] == light.events
    assert light.skipped_lines == 0 and light.rate == 10.0 and light.step_rates == [9.0, 11.0]
    folder = run / "b" / "r0-d0"
    with open(folder / "events.jsonl", "a") as fh:
        fh.write('{"event": "rate", "time": 3')  # a cut last line: the slow path skips the loss lines too
    light = load_run(run, SKIPPED_BY_REPORTS).attempts[0]
    assert "loss" not in [e.kind for e in light.events] and light.skipped_lines == 1
