"""milabox.stats: the pure helpers other commands call (noise, repeats, slow phases, Fieller's ratio interval,
Welch's test). Samples are planted with a fixed seed so every expected verdict is known by construction."""

from __future__ import annotations

import math
import random

import pytest

from milabox.stats import MIN_THRESHOLD, cv_pct, noise_threshold, ratio_ci, repeats_for_cv, slow_phase, welch_p


def test_cv_pct_is_the_sample_std_as_percent_of_the_mean():
    assert cv_pct([100.0]) is None and cv_pct([]) is None  # one run says nothing about run-to-run noise
    assert cv_pct([90.0, 100.0, 110.0]) == pytest.approx(10.0)  # std (n - 1) = 10 around a mean of 100
    assert cv_pct([5.0, 5.0]) == 0.0


@pytest.mark.parametrize(("cv", "runs"), [
    (0.0, 3), (4.999, 3),          # CV < 5 %: 3 runs
    (5.0, 5), (14.999, 5),         # 5-15 %: 5
    (15.0, 5), (24.999, 5),        # 15-25 %: 5 (see CV_BANDS for why not more)
    (25.0, None), (80.0, None),    # >= 25 %: do not trust a throughput figure
])
def test_repeats_for_cv_at_the_band_edges(cv, runs):
    assert repeats_for_cv(cv) == runs


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_repeats_for_cv_refuses_a_cv_that_is_not_one(bad):
    with pytest.raises(ValueError, match="CV"):
        repeats_for_cv(bad)


def _steps(n=60, seed=3):
    rng = random.Random(seed)
    return [rng.gauss(100.0, 2.0) for _ in range(n)]  # a steady attempt: 2 % step noise


def test_slow_phase_finds_a_planted_phase():
    steps = _steps()
    for i in range(20, 30):
        steps[i] *= 0.7  # ten steps 30 % slower (throttling)
    assert slow_phase(steps) == (20, 29)
    steps[25] = 101.0  # one step back at speed inside the phase does not split it
    assert slow_phase(steps) == (20, 29)


def test_slow_phase_ignores_single_and_scattered_slow_steps():
    steps = _steps()
    assert slow_phase(steps) is None
    steps[10] = 20.0  # one very slow step (a GC pause)
    assert slow_phase(steps) is None
    for i in (30, 32, 34, 40):  # a few slow steps, never five in a stretch
        steps[i] = 70.0
    assert slow_phase(steps) is None
    for i in range(50, 54):  # four consecutive: one short of min_steps
        steps[i] = 70.0
    assert slow_phase(steps) is None
    assert slow_phase(steps, min_steps=4) == (50, 53)


def test_slow_phase_ignores_periodic_slow_steps_in_a_long_attempt_and_finds_a_real_phase_in_it():
    # What a clean 10 s attempt of 5 ms steps looked like on a shared 2-core machine: one slow step every ten
    # (a sampler's tick) and now and then three in a row. Chaining those into "phases" flagged every clean run.
    steps = _steps(n=2000)
    for i in range(0, 2000, 10):
        steps[i] *= 0.5
    for i in (500, 501, 502, 1500, 1501, 1502):
        steps[i] *= 0.5
    assert slow_phase(steps) is None
    for i in range(1203, 1397):  # a neighbour takes half the machine for 1 s
        steps[i] *= 0.55
    first, last = slow_phase(steps)  # found to within the periodic slow steps next to it
    assert 1195 <= first <= 1203 and 1396 <= last <= 1405


def test_slow_phase_threshold_and_arguments():
    steps = _steps()
    for i in range(5, 12):
        steps[i] *= 0.9  # 10 % slower: not "well below" at the default 15 %
    assert slow_phase(steps) is None
    assert slow_phase(steps, drop=0.05) == (5, 11)
    assert slow_phase([1.0, 2.0]) is None  # fewer steps than a phase
    with pytest.raises(ValueError, match="min_steps"):
        slow_phase(steps, min_steps=1)
    with pytest.raises(ValueError, match="drop"):
        slow_phase(steps, drop=1.5)


def test_ratio_ci_special_cases():
    assert ratio_ci([100.0], [90.0, 91.0]) is None  # one value: no interval
    assert ratio_ci([100.0, 100.0], [90.0, 90.0]) == (pytest.approx(0.9), pytest.approx(0.9))
    # no spread in a: the interval is b's t interval divided by mean(a)
    b = [88.0, 90.0, 92.0]
    low, high = ratio_ci([100.0, 100.0], b)
    half = 4.302652729749464 * 2.0 / math.sqrt(3)  # t(0.975, 2) x sem(b)
    assert (low, high) == (pytest.approx((90 - half) / 100), pytest.approx((90 + half) / 100))
    assert ratio_ci([1.0, -1.0], [1.0, 2.0]) is None  # a's mean is not above 0: unbounded


def test_ratio_ci_covers_the_true_ratio_95_percent_of_the_time():
    rng = random.Random(7)
    trials, covered = 2000, 0
    for _ in range(trials):
        a = [rng.gauss(100.0, 3.0) for _ in range(5)]
        b = [rng.gauss(90.0, 3.0) for _ in range(5)]
        low, high = ratio_ci(a, b)
        covered += low <= 0.9 <= high
    assert 0.93 <= covered / trials <= 0.99  # df rounded down: a little conservative, never liberal


def test_welch_p_matches_scipy_and_the_ratio_interval():
    from scipy.stats import ttest_ind

    rng = random.Random(11)
    agree = 0
    for _ in range(300):
        a = [rng.gauss(100.0, 3.0) for _ in range(rng.randint(2, 8))]
        b = [rng.gauss(rng.choice([94.0, 97.0, 100.0]), 3.0) for _ in range(rng.randint(2, 8))]
        p = welch_p(a, b)
        assert p == pytest.approx(float(ttest_ind(a, b, equal_var=False).pvalue), rel=1e-9, abs=1e-12)
        low, high = ratio_ci(a, b) or (-math.inf, math.inf)
        agree += (p < 0.05) == (high < 1 or low > 1)
    assert agree >= 285  # the two criteria differ only at the margin (df rounding, df at the estimate)
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0 and welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert welch_p([1.0], [1.0, 2.0]) is None


def test_noise_threshold_is_twice_the_cv_with_a_floor():
    assert noise_threshold([100.0]) is None
    assert noise_threshold([100.0, 100.5, 99.5]) == MIN_THRESHOLD  # 0.5 % noise: the 3 % floor
    assert noise_threshold([90.0, 100.0, 110.0]) == pytest.approx(0.20)  # 10 % noise: 2 x CV
