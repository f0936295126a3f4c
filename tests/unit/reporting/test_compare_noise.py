"""compare's error rates, measured: seeded simulations of run pairs through ``judge_rates``, the function
``compare`` applies to every benchmark (the first test holds that), and the suite score's bootstrap."""

from __future__ import annotations

import random

import pytest
from helpers import cell
from runfolders import write_attempt, write_manifest

from milabox.reporting.compare import compare, format_comparison, judge_rates, suite_bootstrap
from milabox.rundir.read import load_run
from milabox.stats import weighted_geomean

NOISE = 0.03  # run-to-run noise of one attempt's rate (3 %)
PAIRS = 500


def _runs(rng, k, mean=100.0):
    return [rng.gauss(mean, mean * NOISE) for _ in range(k)]


def _folder(tmp_path, label, benches, weights=None):
    run = write_manifest(tmp_path / label, list(benches))
    for name, rates in benches.items():
        for repeat, rate in enumerate(rates):
            write_attempt(run, name, repeat, rate=rate, weight=(weights or {}).get(name, 1.0))
    return load_run(run)


def test_compare_applies_judge_rates_to_the_attempt_rates(tmp_path):
    rng = random.Random(1)
    a_rates, b_rates = _runs(rng, 5), _runs(rng, 5, 95.0)
    got = cell(compare([_folder(tmp_path, "a", {"m": a_rates}), _folder(tmp_path, "b", {"m": b_rates})]), "m", 1)
    assert got.rates == tuple(b_rates)
    assert got.verdict == judge_rates(a_rates, b_rates)


def test_identical_setups_raise_a_false_regression_at_most_5_percent_of_the_time():
    rng = random.Random(20261124)
    verdicts = [judge_rates(_runs(rng, 5), _runs(rng, 5)) for _ in range(PAIRS)]  # --repeat 5 on each side
    false_regression = sum(v.regression for v in verdicts) / PAIRS
    any_flag = sum(v.regression or v.improvement for v in verdicts) / PAIRS
    assert false_regression <= 0.05 and any_flag <= 0.05, (false_regression, any_flag)


def test_a_10_percent_slowdown_is_caught_at_least_80_percent_of_the_time():
    rng = random.Random(42)
    verdicts = [judge_rates(_runs(rng, 5), _runs(rng, 5, 90.0)) for _ in range(PAIRS)]
    caught = sum(v.regression for v in verdicts) / PAIRS
    assert caught >= 0.80, caught
    assert not any(v.improvement for v in verdicts)


def test_repeat_1_flags_nothing_even_for_a_real_slowdown():
    rng = random.Random(5)
    for mean in (100.0, 50.0):
        v = judge_rates(_runs(rng, 1), _runs(rng, 1, mean))
        assert v.significant is None and not v.regression and not v.improvement
        assert v.untested.startswith("too few attempts: 1 successful in the first run and 1 in this one")
    assert judge_rates(_runs(rng, 5), _runs(rng, 1, 50.0)).untested is not None  # one side is enough to refuse


def test_identical_repeat_1_runs_flag_nothing_and_say_why(tmp_path):
    a = _folder(tmp_path, "a", {"m": [100.0], "k": [10.0]})
    b = _folder(tmp_path, "b", {"m": [97.0], "k": [10.3]})
    result = compare([a, b])
    assert result.regressions == [] and not any(c.improvement for r in result.rows for c in r.cells)
    flat = " ".join(format_comparison(result).split())
    assert "No regression against a." in flat
    assert "Not tested: m in b: too few attempts: 1 successful in the first run and 1 in this one" in flat
    assert "Suite score b vs a: no interval: every weighted benchmark needs 2 successful attempts in both runs; " \
           "too few: m (a: 1, b: 1), k (a: 1, b: 1)." in flat


def test_suite_bootstrap_is_seeded_and_uses_the_reports_weights(tmp_path):
    rng = random.Random(9)
    a = {"m": _runs(rng, 5), "k": _runs(rng, 5, 10.0), "z": [1.0]}  # z has weight 0: not in the score
    b = {"m": _runs(rng, 5, 80.0), "k": _runs(rng, 5, 10.0), "z": [1.0]}
    weights = {"m": 3.0, "k": 1.0, "z": 0.0}
    s = suite_bootstrap(a, b, weights, ("a", "b"))
    assert s == suite_bootstrap(a, b, weights, ("a", "b"))  # deterministic
    assert s.benchmarks == ("m", "k") and s.untested is None
    mean = {n: sum(v) / len(v) for n, v in a.items()}
    assert s.score_a == pytest.approx(weighted_geomean([(mean["m"], 3.0), (mean["k"], 1.0)]))
    assert s.ci_a[0] < s.score_a < s.ci_a[1] and s.ratio_ci[1] < 1 and s.p_a_greater > 0.99
    assert suite_bootstrap(a, b, weights, seed=1).ci_a != s.ci_a  # the seed is what makes it repeat

    same = suite_bootstrap(a, {"m": _runs(rng, 5), "k": _runs(rng, 5, 10.0)}, weights)
    assert same.ratio_ci[0] < 1 < same.ratio_ci[1] and 0.02 < same.p_a_greater < 0.98

    # compare takes the weights from the records, as the report does
    folders = [_folder(tmp_path, label, rates, weights) for label, rates in (("a", a), ("b", b))]
    assert compare(folders).suite[0].score_a == pytest.approx(s.score_a)


def test_suite_bootstrap_needs_two_attempts_for_every_weighted_benchmark():
    a = {"m": [100.0, 101.0], "k": [10.0]}
    s = suite_bootstrap(a, {"m": [90.0, 91.0], "k": [10.0, 10.1]}, {"m": 1.0, "k": 1.0}, ("a", "b"))
    assert s.score_a is None and s.p_a_greater is None
    assert s.untested.endswith("too few: k (a: 1, b: 2)")
