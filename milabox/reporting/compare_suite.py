"""The suite score of two runs with a seeded bootstrap interval and P(A > B), for ``milabox compare``.

Resampling replicates (attempts, or the batches of attempts that ran together: milabox.reporting.batches)
within each benchmark keeps what a repeat varies (the run-to-run noise) and nothing else. Each resample's
benchmark scores are the report's (``milabox.reporting.summary.benchmark_score``: its device multiplier and
failure rule included) and the suite score is the report's mean of them, so the report's score of a run is
this module's point score of it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from milabox.reporting.batches import Replicate, multiplier, replicates
from milabox.reporting.summary import benchmark_score, suite_of
from milabox.rundir.model import AttemptResult, Run
from milabox.stats import CONFIDENCE, MIN_ATTEMPTS

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


@dataclass(frozen=True)
class Sample:
    """One benchmark of one run as the score sees it: its replicates and its multiplier M (summary.py)."""

    replicates: tuple[Replicate, ...]
    multiplier: int = 1

    @property
    def successes(self) -> int:
        """Successful replicates with a rate."""
        return sum(1 for r in self.replicates if r.ok and r.rate is not None)


Samples = Mapping[str, "Sample | Sequence[float]"]  # a list of floats: successful attempts of those rates


def run_samples(run: Run) -> dict[str, Sample]:
    """Each benchmark's Sample in a run, as ``summarize`` groups it.

    Args:
        run: a loaded run.

    Returns:
        benchmark name -> Sample, for every benchmark with at least one attempt.
    """
    by: dict[str, list[AttemptResult]] = {}
    for attempt in run.attempts:
        by.setdefault(attempt.benchmark, []).append(attempt)
    return {name: Sample(tuple(replicates(a)), multiplier(a)) for name, a in by.items()}


def _sample(value: Sample | Sequence[float]) -> Sample:
    return value if isinstance(value, Sample) else Sample(tuple(Replicate(True, float(x)) for x in value))


def suite_score(samples: Samples, weights: Mapping[str, float]) -> float | None:
    """The suite score compare bootstraps: the report's (``suite_of`` over ``benchmark_score``).

    Args:
        samples: benchmark -> its Sample, or its successful attempt rates (benchmarks without a positive weight
            are ignored).
        weights: benchmark -> weight.

    Returns:
        The score (0 when a weighted benchmark scores 0), or None when no weighted benchmark has a sample.
    """
    scores = [(benchmark_score(s.replicates, s.multiplier)[1], weights.get(name, 0.0))
              for name, s in ((n, _sample(v)) for n, v in samples.items()) if s.replicates]
    return suite_of([(x, w) for x, w in scores if w > 0]) if any(w > 0 for _, w in scores) else None


def suite_bootstrap(a: Samples, b: Samples,
                    weights: Mapping[str, float], labels: tuple[str, str] = ("A", "B"), resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> SuiteInterval:
    """Bootstrap intervals of two runs' suite scores (``suite_score``) and P(A > B).

    Each resample draws every weighted benchmark's replicates (failed ones too) with replacement, within the
    benchmark and the run, and recomputes both scores; the intervals are the resamples' percentiles. Seeded:
    the same runs always give the same numbers.

    Args:
        a, b: benchmark -> Sample (``run_samples``), or successful attempt rates, of run A (the first) and B.
        weights: benchmark -> weight (the report's); benchmarks with weight 0 are not in the score.
        labels: the names of A and B, for the result and its messages.
        resamples: how many bootstrap resamples.
        seed: the random generator's seed.
        confidence: of the percentile intervals.

    Returns:
        The SuiteInterval; ``untested`` (and no numbers) unless every weighted benchmark of either run has at
        least ``MIN_ATTEMPTS`` successful replicates in both.
    """
    names = tuple(n for n in dict.fromkeys([*weights, *a, *b]) if weights.get(n, 1.0) > 0)
    a, b = ({n: _sample(side.get(n, ())) for n in names} for side in (a, b))
    short = [f"{n} ({labels[0]}: {a[n].successes}, {labels[1]}: {b[n].successes})" for n in names
             if a[n].successes < MIN_ATTEMPTS or b[n].successes < MIN_ATTEMPTS]
    if not names or short:
        why = (f"every weighted benchmark needs {MIN_ATTEMPTS} successful attempts in both runs; "
               f"too few: {', '.join(short)}") if short else "no weighted benchmark"
        return SuiteInterval(labels[1], names, untested=why)
    w = {n: weights.get(n, 1.0) for n in names}
    rng = random.Random(seed)
    scores: list[tuple[float, float]] = []
    for _ in range(resamples):
        pair = [suite_score({n: Sample(tuple(rng.choices(side[n].replicates, k=len(side[n].replicates))),
                                       side[n].multiplier) for n in names}, w) for side in (a, b)]
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
