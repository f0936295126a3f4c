"""`milabox compare`: ratios, significance, regressions and the fairness disclosure.

Unit tests write run folders on disk (tests/runfolders.py) with rates chosen so that the expected
verdict is clear by hand; test_compare_noise.py measures the rule's error rates by simulation.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import statistics

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


def _cv(values):
    return statistics.stdev(values) / statistics.fmean(values) * 100


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
    assert "Regressions against a:" in text and "m in b: 0.800x (95% CI 0.78" in text
    flat = " ".join(text.split())  # the legend is wrapped
    assert "threshold max(2×CV, 3%) of a's attempt rates = m 3.0%" in flat  # 0.86 % noise: the 3 % floor
    assert "Test: Welch t on attempt rates (p < 0.05) and the 95% CI of the ratio by Fieller excluding 1" in flat


def test_noisy_difference_is_not_significant(tmp_path):
    # 10 % slower on average, but the attempts spread +-30 %: the intervals overlap.
    a = make_run(tmp_path, "a", {"m": [100.0, 130.0, 70.0]})
    b = make_run(tmp_path, "b", {"m": [90.0, 120.0, 60.0]})
    got = cell(compare([a, b]), "m", 1)
    assert got.ratio == pytest.approx(0.9) and got.significant is False and not got.regression


def test_significant_but_within_threshold_is_not_a_regression(tmp_path):
    a = make_run(tmp_path, "a", {"m": STEADY})
    b = make_run(tmp_path, "b", {"m": [r * 0.98 for r in STEADY]})
    result = compare([a, b])
    assert cell(result, "m", 1).significant and not cell(result, "m", 1).regression  # 2 % < the 3 % floor
    assert cell(compare([a, b], threshold=0.01), "m", 1).regression  # beyond a 1 % threshold it is one
    assert "threshold 1% (--threshold)" in format_comparison(compare([a, b], threshold=0.01))


def test_default_threshold_follows_the_baseline_noise(tmp_path):
    # 8 % slower and significant, but the baseline's attempts spread 5 % (CV): the threshold is 10 %.
    noisy = [100.0, 105.0, 95.0, 100.0, 100.0, 104.0, 96.0, 100.0]
    a = make_run(tmp_path, "a", {"m": noisy})
    b = make_run(tmp_path, "b", {"m": [r * 0.92 for r in noisy]})
    got = cell(compare([a, b]), "m", 1)
    assert got.verdict.threshold == pytest.approx(max(2 * _cv(noisy), 3.0) / 100)
    assert got.significant and got.verdict.ratio_ci[1] < 1
    assert got.regression is (got.ratio < 1 - got.verdict.threshold)
    assert cell(compare([a, b], threshold=0.05), "m", 1).regression


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


def test_single_attempts_are_not_tested_and_the_comparison_says_why(tmp_path):
    # Steps of one attempt are autocorrelated and carry no run-to-run variance: never a sample for a test,
    # even for a halving (the old rule flagged this one from its steps).
    a = make_run(tmp_path, "a", {"m": [{"rate": 100.0, "steps": [100.0, 101.0, 99.0, 100.0, 100.5]}]})
    b = make_run(tmp_path, "b", {"m": [{"rate": 50.0, "steps": [50.0, 50.5, 49.5, 50.0, 50.2]}]})
    c = make_run(tmp_path, "c", {"m": [{"rate": 100.0, "steps": [100.0, 99.0, 101.0, 100.0, 99.5]}]})
    result = compare([a, b, c])
    for i in (1, 2):
        got = cell(result, "m", i)
        assert got.significant is None and not got.regression and not got.improvement and got.p_value is None
    assert result.regressions == []
    text = format_comparison(result)
    assert "0.500x ?" in text and "±" not in text.splitlines()[2]  # no interval from steps either
    assert ("Not tested: m in b: too few attempts: 1 successful in the first run and 1 in this one, a test needs "
            "2 on each side") in " ".join(text.split())
    assert "No regression against a." in text
    doc = json.loads(format_comparison(result, "json"))
    assert doc["benchmarks"][0]["cells"][1]["untested"].startswith("too few attempts: 1 ")
    assert doc["benchmarks"][0]["cells"][1]["ci95"] is None


def test_fairness_disclosure_lists_every_difference(tmp_path):
    base = {"rate": 100.0, "config": {"benchmark": "m", "size": "smoke", "precision": "fp32", "batch_size": 8,
                                      "n": 512}, "env": {}, "meta": {"torch": "2.13.0", "threads": 2}}
    changed = {"rate": 100.0, "config": {"benchmark": "m", "size": "smoke", "precision": "bf16", "batch_size": 16,
                                         "n": 512}, "env": {"OMP_NUM_THREADS": "1"},
               "meta": {"torch": "2.12.0", "threads": 1}, "image_id": "sha256:1"}
    a = make_run(tmp_path, "a", {"m": [base, base], "k": [base]})
    b = make_run(tmp_path, "b", {"m": [changed, changed], "k": [changed]}, vendor="cuda", host="node2",
                 runtime="native", overrides={"m": {"n": 1024}})
    result = compare([a, b])
    found = {(d.what, tuple(d.benchmarks)): d.values for d in result.differences}
    assert found == {
        ("vendor", ()): ["cpu", "cuda"],
        ("host", ()): ["node1", "node2"],
        ("runtime", ()): ["(unknown)", "native"],  # a's manifest predates the key
        ("overrides", ()): ["{}", '{"m": {"n": 1024}}'],
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
    same = make_run(tmp_path, "c", {"m": [base, base], "k": [base]}, runtime="docker", overrides={})
    again = make_run(tmp_path, "d", {"m": [base, base], "k": [base]}, runtime="docker")
    assert compare([same, again]).differences == []  # no overrides key is no override


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
    assert float(rows[1]["ratio_ci95_high"]) < 1 and float(rows[1]["threshold"]) == pytest.approx(0.03)
    doc = json.loads(format_comparison(result, "json"))
    assert doc["format"] == 2 and doc["threshold"] is None and doc["threshold_rule"] == "max(2×CV, 3%)"
    assert doc["suite"][0]["run"] == "b" and doc["suite"][0]["p_a_greater"] == 1.0
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
