"""`milabox compare`: ratios, significance, regressions and the fairness disclosure.

Unit tests write run folders on disk (tests/runfolders.py) with rates chosen so that the expected
verdict is clear by hand; the engine test plants a real slowdown by running with fewer threads.
"""

from __future__ import annotations

import csv
import functools
import io
import json

import helpers
import pytest
from helpers import cell
from runfolders import write_attempt, write_manifest

from milabox.errors import ConfigError
from milabox.reporting.compare import compare, format_comparison
from milabox.rundir.read import load_run

milabox = functools.partial(helpers.milabox, timeout=120)

STEADY = [100.0, 101.0, 99.0, 100.5]  # mean 100.125, sem ~0.43 %


SLOWER = [80.0, 81.0, 79.0, 80.5]  # the same spread, 20 % slower


SAME = [100.2, 99.5, 100.8, 99.9]  # the same machine again


def make_run(tmp_path, label, benches, **manifest):
    """benches: name -> list of per-attempt rates, or "failed", or a dict of write_attempt options per attempt."""
    run = write_manifest(tmp_path / label, list(benches), **manifest)
    for name, spec in benches.items():
        if spec == "failed":
            write_attempt(run, name, status="failed", cause="exit code 1: RuntimeError: boom")
            continue
        for repeat, rate in enumerate(spec):
            opts = dict(rate) if isinstance(rate, dict) else {"rate": rate}
            write_attempt(run, name, repeat, **opts)
    return load_run(run)


def test_planted_slowdown_is_a_regression_and_identical_runs_are_not(tmp_path):
    a = make_run(tmp_path, "a", {"m": STEADY})
    b = make_run(tmp_path, "b", {"m": SLOWER})
    c = make_run(tmp_path, "c", {"m": SAME})
    result = compare([a, b, c])
    slow, same = cell(result, "m", 1), cell(result, "m", 2)
    assert slow.ratio == pytest.approx(80.125 / 100.125)
    assert slow.significant and slow.p_value < 1e-4 and slow.regression and not slow.improvement
    assert same.ratio == pytest.approx(100.1 / 100.125)
    assert same.significant is False and not same.regression and same.p_value > 0.05
    assert result.regressions == [("m", "b", pytest.approx(0.8002, abs=1e-4))]
    text = format_comparison(result)
    assert "0.800x REGRESSION" in text and "1.00x ~" in text
    assert "Regressions beyond 5% against a:" in text and "m in b: 0.8x" in text


def test_noisy_difference_is_not_significant(tmp_path):
    # 10 % slower on average, but the attempts spread +-30 %: the intervals overlap.
    a = make_run(tmp_path, "a", {"m": [100.0, 130.0, 70.0]})
    b = make_run(tmp_path, "b", {"m": [90.0, 120.0, 60.0]})
    got = cell(compare([a, b]), "m", 1)
    assert got.ratio == pytest.approx(0.9) and got.significant is False and not got.regression


def test_significant_but_within_threshold_is_not_a_regression(tmp_path):
    a = make_run(tmp_path, "a", {"m": STEADY})
    b = make_run(tmp_path, "b", {"m": [r * 0.97 for r in STEADY]})
    result = compare([a, b])
    assert cell(result, "m", 1).significant and not cell(result, "m", 1).regression
    assert cell(compare([a, b], threshold=0.02), "m", 1).regression  # beyond a 2 % threshold it is one


def test_improvement_failed_and_missing(tmp_path):
    a = make_run(tmp_path, "a", {"fast": STEADY, "broken": STEADY, "gone": STEADY})
    b = make_run(tmp_path, "b", {"fast": [r * 1.5 for r in STEADY], "broken": "failed", "new": STEADY})
    result = compare([a, b])
    assert cell(result, "fast", 1).improvement and not cell(result, "fast", 1).regression
    assert cell(result, "broken", 1).status == "failed" and cell(result, "broken", 1).regression
    assert cell(result, "gone", 1).status == "missing" and not cell(result, "gone", 1).regression
    assert cell(result, "new", 0).status == "missing" and cell(result, "new", 1).ratio is None
    text = format_comparison(result)
    assert "1.50x faster" in text and "FAILED" in text and "missing" in text
    assert [r[:2] for r in result.regressions] == [("broken", "b")]


def test_single_attempts_are_compared_over_their_steps(tmp_path):
    a = make_run(tmp_path, "a", {"m": [{"rate": 100.0, "steps": [100.0, 101.0, 99.0, 100.0, 100.5]}]})
    b = make_run(tmp_path, "b", {"m": [{"rate": 50.0, "steps": [50.0, 50.5, 49.5, 50.0, 50.2]}]})
    c = make_run(tmp_path, "c", {"m": [{"rate": 50.0}]})  # no step rates: nothing to test
    result = compare([a, b, c])
    assert cell(result, "m", 1).significant and cell(result, "m", 1).regression
    assert cell(result, "m", 1).summary.stats.source == "steps"
    assert cell(result, "m", 2).significant is None and not cell(result, "m", 2).regression
    assert "0.500x ?" in format_comparison(result)


def test_fairness_disclosure_lists_every_difference(tmp_path):
    base = {"rate": 100.0, "config": {"benchmark": "m", "size": "smoke", "precision": "fp32", "batch_size": 8,
                                      "n": 512}, "env": {}, "meta": {"torch": "2.13.0", "threads": 2}}
    changed = {"rate": 100.0, "config": {"benchmark": "m", "size": "smoke", "precision": "bf16", "batch_size": 16,
                                         "n": 512}, "env": {"OMP_NUM_THREADS": "1"},
               "meta": {"torch": "2.12.0", "threads": 1}, "image_id": "sha256:1"}
    a = make_run(tmp_path, "a", {"m": [base, base], "k": [base]})
    b = make_run(tmp_path, "b", {"m": [changed, changed], "k": [changed]}, vendor="cuda", host="node2")
    result = compare([a, b])
    found = {(d.what, tuple(d.benchmarks)): d.values for d in result.differences}
    assert found == {
        ("vendor", ()): ["cpu", "cuda"],
        ("host", ()): ["node1", "node2"],
        ("image id", ("m", "k")): ["sha256:0", "sha256:1"],
        ("torch", ("m", "k")): ["2.13.0", "2.12.0"],
        ("threads", ("m", "k")): ["2", "1"],
        ("precision", ("m", "k")): ["fp32", "bf16"],
        ("batch size", ("m", "k")): ["8", "16"],
        ("environment OMP_NUM_THREADS", ("m", "k")): ["(unset)", "1"],
    }
    text = format_comparison(result)
    assert "Setup differences (fairness disclosure):" in text
    assert "  environment OMP_NUM_THREADS [m, k]: a=(unset), b=1" in text
    assert "  vendor [run]: a=cpu, b=cuda" in text


def test_no_differences_says_so(tmp_path):
    a = make_run(tmp_path, "a", {"m": STEADY})
    b = make_run(tmp_path, "b", {"m": SAME})
    assert compare([a, b]).differences == []
    assert "Setup: no difference" in format_comparison(compare([a, b]))


def test_csv_json_markdown(tmp_path):
    a = make_run(tmp_path, "a", {"m": STEADY})
    b = make_run(tmp_path, "b", {"m": SLOWER})
    result = compare([a, b])
    rows = list(csv.DictReader(io.StringIO(format_comparison(result, "csv"))))
    assert [(r["benchmark"], r["run"]) for r in rows] == [("m", "a"), ("m", "b")]
    assert float(rows[1]["ratio"]) == pytest.approx(0.8002, abs=1e-4) and rows[1]["regression"] == "True"
    doc = json.loads(format_comparison(result, "json"))
    assert doc["format"] == 1 and doc["threshold"] == 0.05
    assert [r["label"] for r in doc["runs"]] == ["a", "b"]
    assert doc["regressions"][0]["benchmark"] == "m"
    second = doc["benchmarks"][0]["cells"][1]
    assert second["significant"] is True and len(second["ci95"]) == 2 and second["stats_source"] == "attempts"
    md = format_comparison(result, "markdown")
    assert md.startswith("| benchmark") and "REGRESSION" in md
    with pytest.raises(ConfigError, match="unknown comparison format"):
        format_comparison(result, "xml")


def test_compare_needs_two_runs_and_a_sane_threshold(tmp_path):
    a = make_run(tmp_path, "a", {"m": STEADY})
    with pytest.raises(ConfigError, match="at least two"):
        compare([a])
    with pytest.raises(ConfigError, match="threshold"):
        compare([a, a], threshold=1.5)


def test_cli_exit_code_on_regression(tmp_path):
    make_run(tmp_path, "a", {"m": STEADY})
    make_run(tmp_path, "b", {"m": SLOWER})
    make_run(tmp_path, "c", {"m": SAME})
    a, b, c = (str(tmp_path / x) for x in "abc")
    plain = milabox("compare", a, b)
    assert plain.returncode == 0 and "REGRESSION" in plain.stdout
    failing = milabox("compare", a, b, "--fail-on-regression")
    assert failing.returncode == 3 and "REGRESSION" in failing.stdout
    assert milabox("compare", a, c, "--fail-on-regression").returncode == 0
    assert milabox("compare", a, b, "--fail-on-regression", "--threshold", "25").returncode == 0
    one = milabox("compare", a)
    assert one.returncode == 2 and one.stderr.strip() == ("milabox: error: compare needs at least two run folders, "
                                                          "e.g. milabox compare runs/a runs/b")
    missing = milabox("compare", a, str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a run folder" in missing.stderr and "Traceback" not in missing.stderr
