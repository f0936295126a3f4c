"""The suite score's rule (a failure never helps), its coverage, and reports of several runs (side by side,
--pool). Run folders come from tests/runfolders.py."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error, milabox
from runfolders import write_attempt, write_manifest

from milabox.cli.main import cli
from milabox.errors import ConfigError
from milabox.reporting.formats import SMOKE_NOTE, format_report
from milabox.reporting.side_by_side import check_poolable
from milabox.reporting.summary import not_comparable, summarize
from milabox.rundir.read import load_run


def _two_benchmarks(path, b_failures, **manifest):
    """a and b at perf 100, weight 1 each, two attempts each; b fails ``b_failures`` of its two."""
    run = write_manifest(path, ["a", "b"], **manifest)
    for repeat in (0, 1):
        write_attempt(run, "a", repeat, rate=100.0)
        failed = repeat < b_failures
        write_attempt(run, "b", repeat, rate=None if failed else 100.0, status="failed" if failed else "ok",
                      cause="exit code 1" if failed else None)
    return load_run(run)


def test_total_failure_ranks_below_partial_failure(tmp_path):
    clean = summarize(_two_benchmarks(tmp_path / "clean", 0))
    half = summarize(_two_benchmarks(tmp_path / "half", 1))
    total = summarize(_two_benchmarks(tmp_path / "total", 2))
    assert clean.score == pytest.approx(100.0)
    assert half.score == pytest.approx((100.0 * 50.0) ** 0.5)  # b: 100 x 1/2
    assert total.score == 0.0 and total.zeroed_by == ["b"]
    assert clean.score > half.score > total.score
    assert "Score: 0 (zeroed by: b [all 2 attempt(s) failed])" in format_report(total, "table")


def test_total_failure_ranks_below_partial_failure_against_a_baseline(tmp_path):
    base = summarize(_two_benchmarks(tmp_path / "base", 0))
    half = summarize(_two_benchmarks(tmp_path / "half", 1), base, "base")
    total = summarize(_two_benchmarks(tmp_path / "total", 2), base, "base")
    assert half.baseline.score == pytest.approx(0.5 ** 0.5)
    assert total.baseline.score == 0.0 and total.baseline.zeroed_by == ["b"]
    assert half.baseline.score > total.baseline.score
    assert "Against baseline base: 0x (zeroed by: b [all 2 attempt(s) failed])" in format_report(total, "table")


def test_coverage_names_the_rows_and_what_the_vendor_excluded(tmp_path):
    run = write_manifest(tmp_path / "run", ["a", "u"], excluded={"c": "fp16 autocast is a GPU mode"})
    write_attempt(run, "a", rate=10.0)
    write_attempt(run, "u", rate=10.0, weight=0.0)
    summary = summarize(load_run(run))
    assert summary.rows == ["a"] and summary.excluded == {"c": "fp16 autocast is a GPU mode"}
    assert "Coverage: 1 weighted row(s) (a); excluded: c [fp16 autocast is a GPU mode]" in \
        format_report(summary, "table")
    assert json.loads(format_report(summary, "json"))["coverage"]["excluded"] == {"c": "fp16 autocast is a GPU mode"}


def test_scores_over_different_rows_are_not_ranked(tmp_path):
    cpu = write_manifest(tmp_path / "cpu", ["a"], excluded={"b": "GPU only"})
    write_attempt(cpu, "a", rate=1.0)
    gpu = write_manifest(tmp_path / "gpu", ["a", "b"], vendor="cuda")
    write_attempt(gpu, "a", rate=50.0)
    write_attempt(gpu, "b", rate=50.0)
    s_cpu, s_gpu = summarize(load_run(cpu)), summarize(load_run(gpu))
    assert not_comparable(s_cpu, s_gpu) == f"different rows (only in {gpu}: b)"
    assert not_comparable(s_cpu, s_cpu) is None
    out = CliRunner().invoke(cli, ["report", str(cpu), str(gpu)])
    assert out.exit_code == 0, out.output
    assert f"[1] vs [2]: not comparable: different rows (only in {gpu}: b)" in out.output
    assert "comparable (same" not in out.output


def test_report_of_two_setups_shows_two_columns_never_pooled(tmp_path):
    cpu = write_manifest(tmp_path / "cpu", ["matmul"])
    write_attempt(cpu, "matmul", rate=0.17, unit="TFLOPS")
    gpu = write_manifest(tmp_path / "gpu", ["matmul"], vendor="cuda")
    write_attempt(gpu, "matmul", rate=50.0, unit="TFLOPS")
    out = CliRunner().invoke(cli, ["report", str(cpu), str(gpu)])
    assert out.exit_code == 0, out.output
    header = next(line for line in out.output.splitlines() if line.startswith("benchmark"))
    assert "perf [1]" in header and "perf [2]" in header
    row = next(line for line in out.output.splitlines() if line.startswith("matmul"))
    assert "0.17" in row and "50" in row and "25.09" not in out.output  # each run its own column, no pooled mean
    assert "Setups differ: 'vendor' ('cpu' in" in out.output
    assert "[1] vs [2]: comparable (same 1 weighted rows): [2] > [1]" in out.output
    doc = json.loads(CliRunner().invoke(cli, ["report", str(cpu), str(gpu), "--format", "json"]).output)
    assert doc["side_by_side"] is True and [r["benchmarks"][0]["perf"] for r in doc["reports"]] == [0.17, 50.0]
    assert doc["comparisons"] == [{"a": 1, "b": 2, "comparable": True, "why": None}]


def test_same_setup_folders_are_side_by_side_unless_pooled(tmp_path):
    runs = []
    for i, rate in enumerate((10.0, 20.0)):
        runs.append(write_manifest(tmp_path / f"r{i}", ["a"]))
        write_attempt(runs[-1], "a", rate=rate)
    side = CliRunner().invoke(cli, ["report", *map(str, runs)])
    assert "perf [2]" in side.output and "Setups differ" not in side.output
    pooled = CliRunner().invoke(cli, ["report", *map(str, runs), "--pool", "--format", "json"])
    assert pooled.exit_code == 0, pooled.output
    row = json.loads(pooled.output)["benchmarks"][0]
    assert row["n"] == 2 and row["perf"] == pytest.approx(15.0) and row["stats"]["ci95"] is not None


def test_pool_refuses_different_setups_naming_the_field(tmp_path):
    a = write_manifest(tmp_path / "a", ["x"])
    write_attempt(a, "x", rate=1.0)
    b = write_manifest(tmp_path / "b", ["x"], images={"x": {"tag": "t", "id": "sha256:other"}})
    write_attempt(b, "x", rate=1.0)
    with pytest.raises(ConfigError, match="'images' differs"):
        check_poolable([load_run(a), load_run(b)])
    c = write_manifest(tmp_path / "c", ["x"], overrides={"batch_size": 4})
    write_attempt(c, "x", rate=1.0)
    with pytest.raises(ConfigError, match="'overrides' differs"):
        check_poolable([load_run(a), load_run(c)])
    proc = milabox("report", str(a), str(b), "--pool")
    assert proc.returncode == 2
    assert_one_line_error(proc, "cannot pool", "'images' differs", "--pool")


def test_attempt_is_the_unit_perf_inside_its_interval_and_smoke_note(tmp_path):
    run = write_manifest(tmp_path / "run", ["bert"])
    # bert-fp32's shape on main: per-step rates far from the attempts' summary rates
    for repeat, rate in enumerate((16.0, 18.0, 17.0)):
        write_attempt(run, "bert", repeat, rate=rate, steps=[80.0, 104.0, 27.0])
    summary = summarize(load_run(run))
    (row,) = summary.benchmarks
    assert row.perf == pytest.approx(17.0) and row.stats.mean == row.perf
    assert row.stats.ci_low < row.perf < row.stats.ci_high and row.stats.ci_high < 27.0
    assert row.jitter_pct > 40  # the step spread is its own column, not the interval
    table = format_report(summary, "table")
    assert "jitter %" in table and SMOKE_NOTE in table
    full = write_manifest(tmp_path / "full", ["bert"], size="full")
    write_attempt(full, "bert", rate=17.0)
    assert SMOKE_NOTE not in format_report(summarize(load_run(full)), "table")
