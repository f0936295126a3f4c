"""The suite score of two runs with a seeded bootstrap interval and P(A > B), for ``milabox compare``.

Resampling attempts within each benchmark keeps what a repeat varies (the run-to-run noise) and nothing else.
The score here (``suite_score``) is a small function of per-benchmark attempt rates and the report's weights,
kept apart from milabox.reporting.summary's so the two can be aligned in one place when that rule changes.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from milabox.stats import CONFIDENCE, MIN_ATTEMPTS, weighted_geomean

#: The bootstrap's resamples and seed (fixed, so the same runs always print the same interval).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class SuiteInterval:
    """The suite score of the first run (A) and of a later one (B) with bootstrap intervals (``suite_bootstrap``)."""

    run: str  # B's label
    benchmarks: tuple[str, ...]  # the weighted benchmarks in the score
    score_a: float | None = None
    score_b: float | None = None
    ci_a: tuple[float, float] | None = None
    ci_b: tuple[float, float] | None = None
    ratio: float | None = None  # score B / score A
    ratio_ci: tuple[float, float] | None = None
    p_a_greater: float | None = None  # share of resamples in which A scores above B
    untested: str | None = None  # why there is no interval


def suite_score(rates: Mapping[str, Sequence[float]], weights: Mapping[str, float]) -> float | None:
    """The suite score compare bootstraps: the weighted geometric mean of each benchmark's mean attempt rate.

    Kept apart so it can follow the report's rule (milabox.reporting.summary): today it uses the report's
    weights but leaves out its device multiplier and success ratio, which are equal across two runs of the
    same plan without failures.

    Args:
        rates: benchmark -> attempt rates (benchmarks without a positive weight are ignored).
        weights: benchmark -> weight.

    Returns:
        The score, or None when no weighted benchmark has a rate.
    """
    return weighted_geomean((statistics.fmean(r), weights.get(name, 0.0)) for name, r in rates.items() if r)


def suite_bootstrap(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
                    weights: Mapping[str, float], labels: tuple[str, str] = ("A", "B"), resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> SuiteInterval:
    """Bootstrap intervals of two runs' suite scores (``suite_score``) and P(A > B).

    Each resample draws every weighted benchmark's attempts with replacement, within the benchmark and the
    run, and recomputes both scores; the intervals are the resamples' percentiles. Seeded: the same runs
    always give the same numbers.

    Args:
        a, b: benchmark -> successful attempt rates of run A (the first) and run B.
        weights: benchmark -> weight (the report's); benchmarks with weight 0 are not in the score.
        labels: the names of A and B, for the result and its messages.
        resamples: how many bootstrap resamples.
        seed: the random generator's seed.
        confidence: of the percentile intervals.

    Returns:
        The SuiteInterval; ``untested`` (and no numbers) unless every weighted benchmark of either run has at
        least ``MIN_ATTEMPTS`` successful attempts in both.
    """
    names = tuple(n for n in dict.fromkeys([*weights, *a, *b]) if weights.get(n, 1.0) > 0)
    short = [f"{n} ({labels[0]}: {len(a.get(n, ()))}, {labels[1]}: {len(b.get(n, ()))})" for n in names
             if len(a.get(n, ())) < MIN_ATTEMPTS or len(b.get(n, ())) < MIN_ATTEMPTS]
    if not names or short:
        why = (f"every weighted benchmark needs {MIN_ATTEMPTS} successful attempts in both runs; "
               f"too few: {', '.join(short)}") if short else "no weighted benchmark"
        return SuiteInterval(labels[1], names, untested=why)
    w = {n: weights.get(n, 1.0) for n in names}
    rng = random.Random(seed)
    scores: list[tuple[float, float]] = []
    for _ in range(resamples):
        pair = [suite_score({n: rng.choices(side[n], k=len(side[n])) for n in names}, w) for side in (a, b)]
        scores.append((pair[0] or 0.0, pair[1] or 0.0))
    score_a, score_b = (suite_score({n: side[n] for n in names}, w) for side in (a, b))
    tail = (1 - confidence) / 2
    return SuiteInterval(
        labels[1], names, score_a, score_b, _percentiles([s for s, _ in scores], tail),
        _percentiles([s for _, s in scores], tail),
        score_b / score_a if score_a and score_b else None,
        _percentiles([sb / sa for sa, sb in scores if sa > 0], tail),
        sum(sa > sb for sa, sb in scores) / resamples)


def _percentiles(values: list[float], tail: float) -> tuple[float, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    return ordered[math.floor(tail * last)], ordered[math.ceil((1 - tail) * last)]
