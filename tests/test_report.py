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

from milabox.errors import MilaboxError, ResultsError
from milabox.report import COLUMNS, FORMATS, format_report, summarize
from milabox.results import load_run, write_json_atomic

T0 = 1_700_000_000.0


# ------------------------------------------------------------------------------------------
# Helpers writing run folders


def write_manifest(run_dir, benchmarks, **extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": 1,
        "milabox_version": "0.1.0",
        "source_commit": "abc123",
        "host": "node1",
        "vendor": "cpu",
        "size": "smoke",
        "command": ["milabox", "run"],
        "benchmarks": benchmarks,
        "repeat": 1,
        "devices": ["0"],
        "images": {},
        "started": "2026-11-24T10:00:00+00:00",
        "ended": "2026-11-24T10:01:00+00:00",
        "status": "complete",
    }
    manifest.update(extra)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def write_attempt(
    run_dir,
    bench,
    repeat=0,
    device="0",
    *,
    status="ok",
    rate=None,
    steps=(),
    peak_mb=None,
    plan="per_device",
    unit="items/s",
    weight=1.0,
    cause=None,
    extra_lines=(),
    tail=None,
    record_text=None,
):
    """One attempt folder with a record.json and an events.jsonl like the runtime writes.

    rate: the summary rate (no summary event when None). steps: per-step rates.
    extra_lines: raw lines appended after the known events. tail: raw text appended last,
    with no newline (a line cut short). record_text: raw record.json content instead.
    """
    folder = run_dir / bench / f"r{repeat}-d{device}"
    folder.mkdir(parents=True)
    events = [
        {"event": "start", "time": T0, "benchmark": bench, "size": "smoke", "pid": 1},
        {
            "event": "meta",
            "time": T0,
            "torch": "2.5",
            "device": {"type": "cpu", "name": "x", "count": 1},
            "python": "3.11",
            "hostname": "h",
            "threads": 4,
            "precision": "fp32",
        },
    ]
    for i, value in enumerate(steps):
        events.append({"event": "rate", "time": T0 + i, "step": i, "value": value, "unit": unit})
        events.append({"event": "loss", "time": T0 + i, "step": i, "value": 1.0 / (i + 1)})
    if peak_mb is not None:
        events.append({"event": "memory", "time": T0 + 10, "peak_mb": peak_mb})
    if rate is not None:
        events.append(
            {
                "event": "summary",
                "time": T0 + 11,
                "rate": rate,
                "unit": unit,
                "items": 100,
                "seconds": 100 / rate,
                "steps": len(steps),
                "warmup": 2,
            }
        )
    events.append({"event": "end", "time": T0 + 12, "status": "ok" if status == "ok" else "failed", "error": cause})
    text = "".join(json.dumps(e) + "\n" for e in events)
    text += "".join(line + "\n" for line in extra_lines)
    if tail is not None:
        text += tail
    (folder / "events.jsonl").write_text(text)
    (folder / "container.log").write_text("log\n")
    record = {
        "format": 1,
        "benchmark": bench,
        "group": bench.split("-")[0],
        "repeat": repeat,
        "device": device,
        "plan": plan,
        "unit": unit,
        "weight": weight,
        "size": "smoke",
        "image": "milabox/x:cpu-0.1.0",
        "image_id": "sha256:0",
        "status": status,
        "cause": cause,
        "exit_code": 0 if status == "ok" else 1,
        "timed_out": False,
        "oom_killed": False,
        "wall_s": 12.3,
        "started": "2026-11-24T10:00:00+00:00",
        "ended": "2026-11-24T10:00:12+00:00",
    }
    (folder / "record.json").write_text(record_text if record_text is not None else json.dumps(record))
    return folder


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
    assert row.std_pct == 0.0  # three identical step rates, unknown event did not count
    assert row.peak_memory_mb == 3.0
    (attempt,) = load_run(run).attempts
    assert "gpu_temp" in [e.kind for e in attempt.events]
    assert attempt.skipped_lines == 2  # the object without "event" and the array


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
        load_run(run)
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
        load_run(run)


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


def test_single_success_uses_step_rates_for_spread(tmp_path):
    run = write_manifest(tmp_path / "run", ["s"])
    write_attempt(run, "s", rate=11.5, steps=[10.0, 12.0, 14.0])
    row = bench_row(summarize([load_run(run)]), "s")
    # steps mean 12, deviations -2, 0, 2 -> variance 8/2 = 4, std 2 -> 2/12 = 16.67 %
    assert row.perf == 11.5  # perf is the summary rate, not the step mean
    assert row.std_pct == pytest.approx(100 * 2 / 12)
    assert row.sem_pct == pytest.approx(100 * 2 / 12 / math.sqrt(3))


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

    assert summary.score == pytest.approx(10.0**0.25 * 1000.0**0.75)
    # a weighted benchmark with score 0, and one the manifest lists but that never ran
    assert summary.incomplete == ["broken", "never-ran"]
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
    assert last.startswith("Score:") and "incomplete: broken" in last
    assert "Failure rate: 25.0%" in last

    md = format_report(mixed_summary, "markdown")
    assert "| fast" in md and "|--" in md.replace(":", "-")
    assert "Failures:" in md and r"RuntimeError: a\|b" in md  # pipe escaped inside the table
    assert "incomplete: broken" in md.rstrip("\n").splitlines()[-1]


def test_json_has_exactly_the_keys(mixed_summary):
    doc = json.loads(format_report(mixed_summary, "json"))
    assert doc["format"] == 1
    assert {"benchmarks", "score", "failure_rate", "incomplete", "format"} <= set(doc)
    assert doc["incomplete"] == ["broken"]
    assert doc["failure_rate"] == pytest.approx(0.25)
    for obj in doc["benchmarks"]:
        assert list(obj) == list(COLUMNS)
        assert set(obj) == {
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
    assert doc["score"] == pytest.approx(math.exp((math.log(2 * 1234.5678) + 2 * math.log(12.3456)) / 3))


def test_csv_parses_back(mixed_summary):
    rows = list(csv.DictReader(io.StringIO(format_report(mixed_summary, "csv"))))
    assert [r["name"] for r in rows] == ["fast", "slow", "broken"]
    assert list(rows[0]) == list(COLUMNS)
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
