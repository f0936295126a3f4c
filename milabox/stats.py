"""Statistics of measured rates: spread, confidence intervals, significance, scores, noise and slow phases.

Everything here works on plain lists of floats, so the report, the comparison and ``run --until-sem`` /
``--repeat auto`` / ``--until-stable`` share one definition of sem%, CV% and of "significantly different".
SciPy (``scipy.special`` only) supplies the Student t quantiles (the common 95 % ones from a table of its
values) and the t distribution behind Welch's test.

Helpers for other commands: ``cv_pct`` (run-to-run noise), ``repeats_for_cv`` (how many runs that noise
calls for), ``slow_phase`` (a transient slow phase inside one attempt's steps), ``ratio_ci`` (Fieller's
interval of a ratio of two means), ``welch_p``.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The confidence level of every interval milabox reports.
CONFIDENCE = 0.95

#: Fewest attempt-level values (one rate per attempt) for a spread, a test or a suite interval in compare.
MIN_ATTEMPTS = 2

#: Below this p-value (Welch, with the ratio's interval excluding 1) a difference counts as significant.
ALPHA = 0.05


@dataclass(frozen=True)
class Stats:
    """Descriptive statistics of a sample of rates.

    Attributes:
        values: the sample itself (kept for significance tests).
        source: what one value is: ``attempts`` (one rate per attempt: repeats and devices) or
            ``steps`` (the per-step rates of a single attempt).
        mean, median: of the values.
        std: sample standard deviation (n - 1); None when n < 2.
        sem: standard error of the mean, std / sqrt(n); None when n < 2.
        ci_low, ci_high: the ``CONFIDENCE`` interval of the mean, mean -/+ t(n-1) * sem (Student t);
            None when n < 2.
    """

    values: tuple[float, ...]
    source: str
    mean: float
    median: float
    std: float | None
    sem: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def n(self) -> int:
        """Number of values."""
        return len(self.values)

    @property
    def std_pct(self) -> float | None:
        """``std`` as % of the mean (None when unknown or the mean is 0)."""
        return _pct(self.std, self.mean)

    @property
    def sem_pct(self) -> float | None:
        """``sem`` as % of the mean (None when unknown or the mean is 0)."""
        return _pct(self.sem, self.mean)

    @property
    def ci_pct(self) -> float | None:
        """Half-width of the confidence interval as % of the mean (None when unknown)."""
        if self.ci_high is None:
            return None
        return _pct(self.ci_high - self.mean, self.mean)

    def to_dict(self) -> dict[str, object]:
        """The JSON form (docs/report-schema.md): every attribute but ``values``, plus ``n``."""
        return {"source": self.source, "n": self.n, "mean": self.mean, "median": self.median, "std": self.std,
                "sem": self.sem, "ci95": None if self.ci_low is None else [self.ci_low, self.ci_high],
                "confidence": CONFIDENCE}


def _pct(part: float | None, whole: float) -> float | None:
    if part is None or whole == 0:
        return None
    return 100.0 * part / abs(whole)


# t(0.975, df) for df = 1..120, as printed statistical tables give it, computed with SciPy's stdtrit (a test
# checks every entry against SciPy). Reports use nothing else from SciPy, whose import alone costs ~0.4 s of
# the 2 s a report over 100 runs may take; larger df and other confidence levels ask SciPy.
_T_975 = (
    12.7062047361747, 4.30265272974946, 3.18244630528371, 2.77644510519779, 2.57058183563631, 2.44691185114498,
    2.36462425159278, 2.30600413520417, 2.2621571627982, 2.22813885198627, 2.20098516009164, 2.17881282966723,
    2.16036865646279, 2.1447866879178, 2.13144954555978, 2.11990529922125, 2.10981557783332, 2.10092204024104,
    2.09302405440831, 2.08596344726586, 2.07961384472768, 2.07387306790403, 2.06865761041905, 2.06389856162802,
    2.0595385527533, 2.05552943864287, 2.05183051648028, 2.04840714179525, 2.0452296421327, 2.04227245630124,
    2.03951344639641, 2.0369333434601, 2.03451529744934, 2.03224450931772, 2.03010792825034, 2.02809400098045,
    2.02619246302911, 2.02439416391197, 2.02269092003676, 2.02107539030627, 2.01954097044138, 2.01808170281844,
    2.01669219922782, 2.01536757444376, 2.01410338888085, 2.01289559891943, 2.01174051372977, 2.01063475762423,
    2.00957523712924, 2.00855911210076, 2.00758377031584, 2.00664680506169, 2.00574599531787, 2.00487928818806,
    2.00404478328915, 2.00324071884787, 2.00246545929101, 2.00171748414524, 2.00099537808827, 2.00029782201426,
    1.99962358499494, 1.99897151703338, 1.99834054252074, 1.99772965431769, 1.997137908392, 1.99656441895231,
    1.9960083540253, 1.99546893142984, 1.99494541510724, 1.99443711177119, 1.99394336784563, 1.99346356666187,
    1.99299712588985, 1.99254349518093, 1.99210215400224, 1.99167260964466, 1.99125439538838, 1.99084706881169,
    1.99045021023013, 1.99006342125445, 1.9896863234569, 1.98931855713657, 1.98895978017516, 1.98860966697571,
    1.98826790747722, 1.98793420623902, 1.98760828158907, 1.98728986483117, 1.98697869950628, 1.98667454070377,
    1.98637715441862, 1.98608631695113, 1.98580181434582, 1.9855234418666, 1.9852510035055, 1.98498431152246,
    1.98472318601398, 1.98446745450848, 1.98421695158642, 1.98397151852355, 1.98373100295561, 1.98349525856288,
    1.98326414477346, 1.98303752648373, 1.98281527379505, 1.9825972617655, 1.98238337017569, 1.98217348330773,
    1.98196748973648, 1.98176528213237, 1.9815667570749, 1.98137181487631, 1.98118035941466, 1.98099229797586,
    1.98080754110391, 1.98062600245909, 1.9804475986834, 1.98027224927297, 1.98009987645694, 1.97993040508244,
)


@functools.lru_cache(maxsize=256)
def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student t critical value: ``mean +/- t * sem`` covers ``confidence``.

    Args:
        df: degrees of freedom (n - 1), at least 1.
        confidence: e.g. 0.95.

    Returns:
        t such that P(|T| <= t) = confidence for T ~ Student(df); 12.706 for df=1 at 95 %.

    Raises:
        ValueError: df < 1 or confidence not in (0, 1).
    """
    if df < 1 or not 0 < confidence < 1:
        raise ValueError(f"t_quantile needs df >= 1 and 0 < confidence < 1, got df={df}, confidence={confidence}")
    if confidence == 0.95 and df <= len(_T_975):
        return _T_975[df - 1]
    from scipy.special import stdtrit  # much lighter to import than scipy.stats

    return float(stdtrit(df, 0.5 + confidence / 2))


def describe(values: Iterable[float], source: str = "attempts") -> Stats | None:
    """Mean, median, std, sem and 95 % confidence interval of ``values``.

    Args:
        values: finite numbers (rates).
        source: ``attempts`` or ``steps`` (recorded, see ``Stats``).

    Returns:
        The Stats, or None for an empty sample. With a single value, spread and interval are None.

    Raises:
        Nothing.
    """
    sample = tuple(float(v) for v in values)
    if not sample:
        return None
    mean = statistics.fmean(sample)
    median = statistics.median(sample)
    if len(sample) < 2:
        return Stats(sample, source, mean, median, None, None, None, None)
    std = statistics.stdev(sample)
    sem = std / math.sqrt(len(sample))
    half = t_quantile(len(sample) - 1) * sem
    return Stats(sample, source, mean, median, std, sem, mean - half, mean + half)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) that ``a`` and ``b`` have the same mean.

    Args:
        a, b: the two samples.

    Returns:
        The p-value; None when either sample has fewer than 2 values. Two samples without any
        spread give 1.0 when their means are equal and 0.0 otherwise (SciPy would say NaN).

    Raises:
        Nothing.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va == 0 and vb == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    from scipy.special import stdtr  # the formula of scipy.stats.ttest_ind(equal_var=False), without its overhead

    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    p = float(2 * stdtr(df, -abs(t)))
    return p if math.isfinite(p) else None


def weighted_geomean(pairs: Iterable[tuple[float, float]]) -> float | None:
    """exp(sum w ln x / sum w) over (x, w) pairs with x > 0 and w > 0.

    Args:
        pairs: (value, weight).

    Returns:
        The weighted geometric mean, or None when no pair qualifies.

    Raises:
        Nothing.
    """
    num = den = 0.0
    for value, weight in pairs:
        if value > 0 and weight > 0:
            num += weight * math.log(value)
            den += weight
    return math.exp(num / den) if den > 0 else None


def sem_pct_of(rates: Sequence[float]) -> float | None:
    """sem as % of the mean of per-attempt rates, as the report computes it (``run --until-sem``).

    Args:
        rates: the successful attempts' rates so far.

    Returns:
        The sem%, or None with fewer than two rates (one attempt says nothing about the spread across
        repeats) or a zero mean.

    Raises:
        Nothing.
    """
    if len(rates) < 2:
        return None
    stats = describe(rates)
    return stats.sem_pct if stats else None


def cv_pct(values: Sequence[float]) -> float | None:
    """Coefficient of variation: sample standard deviation (n - 1) as % of the mean (run-to-run noise).

    Args:
        values: one rate per attempt.

    Returns:
        The CV in %, or None with fewer than two values or a zero mean.

    Raises:
        Nothing.
    """
    stats = describe(values)
    return stats.std_pct if stats else None


#: ``repeats_for_cv``'s bands: (CV % upper bound, runs). The rule is Milabench's later one as the issue
#: "Decision-grade numbers" states it (no public text of it was found to cite): < 5 % -> 3, 5-15 % -> 5,
#: 15-25 % -> 5, >= 25 % -> do not trust. 15-25 % stays at 5 (not more): 5 runs already give an
#: attempt-level interval; more repeats shrink it only as 1/sqrt(n), while a CV that high usually means a
#: setup problem (contention, throttling) that more repeats do not fix, so callers should warn instead.
CV_BANDS = ((5.0, 3), (15.0, 5), (25.0, 5))


def repeats_for_cv(cv: float) -> int | None:
    """How many runs a benchmark with this run-to-run noise needs (``run --repeat auto``), per ``CV_BANDS``.

    Args:
        cv: the coefficient of variation of attempt rates, in % (``cv_pct``).

    Returns:
        3 below 5 %, 5 from 5 % to below 25 %, None from 25 % on ("do not trust a throughput figure").

    Raises:
        ValueError: cv is negative or not finite.
    """
    if not math.isfinite(cv) or cv < 0:
        raise ValueError(f"repeats_for_cv needs a CV in % >= 0, got {cv!r}")
    return next((runs for bound, runs in CV_BANDS if cv < bound), None)


#: ``slow_phase`` defaults: at least this many slow steps, each below the median by more than this fraction.
SLOW_MIN_STEPS = 5
SLOW_DROP = 0.15
#: ``slow_phase`` judges windows of this fraction of the attempt's steps (at least ``min_steps``), so that
#: periodic or scattered slow steps (a sampler's tick, a GC pause, a neighbour's burst of a few ms) never
#: add up to a phase however long the attempt is.
SLOW_WINDOW_FRACTION = 0.05


def slow_phase(step_rates: Sequence[float], min_steps: int = SLOW_MIN_STEPS,
               drop: float = SLOW_DROP) -> tuple[int, int] | None:
    """A transient phase of slow steps in one attempt (warm-up leftovers, throttling, a noisy neighbour).

    A step is slow when its rate is below ``median x (1 - drop)``, the median over all the attempt's steps. A
    step's window is the ``w = max(min_steps, 5 % of the steps)`` consecutive steps centred on it; it is slow
    when most of them are (their median is below the cut). A phase is a stretch of steps whose windows are
    slow, from its first slow step to its last (with the slow steps right next to it), holding at least
    ``min_steps`` slow steps. So a single slow step, scattered ones or a periodic one every few steps never
    make a phase, and a few steps back at speed inside a long phase do not split it. A phase covering most steps moves the
    median itself and is not found: this detects the minority phase of an otherwise steady attempt.

    Args:
        step_rates: the attempt's per-step rates in step order (warm-up excluded).
        min_steps: fewest steps in a window, and so in a phase (default 5, at least 2).
        drop: how far below the median a slow step is, as a fraction (default 0.15, in (0, 1)).

    Returns:
        (first, last) step index of the longest phase (the earliest of equally long ones), or None.

    Raises:
        ValueError: min_steps < 2 or drop outside (0, 1).
    """
    if min_steps < 2 or not 0 < drop < 1:
        raise ValueError(f"slow_phase needs min_steps >= 2 and 0 < drop < 1, got {min_steps}, {drop}")
    rates = list(step_rates)
    width = max(min_steps, math.ceil(SLOW_WINDOW_FRACTION * len(rates)))
    if len(rates) < width:
        return None
    cut = statistics.median(rates) * (1 - drop)
    slow = [r < cut for r in rates]
    # Step t's window: the ``width`` steps centred on it (shifted inside the attempt at its ends), counted by
    # prefix sums. A stretch of slow windows is trimmed to its slow steps, with the slow steps next to it taken
    # in (a centred window misses the first and last few of a short phase).
    before = list(itertools.accumulate(slow, initial=0))
    half, last_start = width // 2, len(rates) - width
    in_slow = [2 * (before[k + width] - before[k]) > width
               for k in (min(max(0, t - half), last_start) for t in range(len(rates)))]
    best: tuple[int, int] | None = None
    for is_slow, group in itertools.groupby(range(len(rates)), key=in_slow.__getitem__):
        held = [k for k in group if is_slow and slow[k]]
        if not held:
            continue
        first, last = held[0], held[-1]
        while first > 0 and slow[first - 1]:
            first -= 1
        while last + 1 < len(rates) and slow[last + 1]:
            last += 1
        if sum(slow[first:last + 1]) >= min_steps and (best is None or last - first > best[1] - best[0]):
            best = (first, last)
    return best


def ratio_ci(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Confidence interval of mean(b) / mean(a) for independent samples, by Fieller's theorem.

    The bounds are the ratios r with (mean b - r mean a)^2 <= t^2 (sem_b^2 + r^2 sem_a^2), t the Student
    quantile at the Welch-Satterthwaite degrees of freedom of that difference at the point estimate,
    rounded down (conservative). At r = 1 this is Welch's test, so "the interval excludes 1" and
    "Welch p < 1 - confidence" agree up to that rounding.

    Args:
        a: the baseline sample (e.g. attempt rates of run A).
        b: the other sample.
        confidence: e.g. 0.95.

    Returns:
        (low, high); None when either sample has fewer than 2 values or mean(a) is not clearly above 0
        (the interval is unbounded then). Two samples without spread give (ratio, ratio).

    Raises:
        ValueError: confidence not in (0, 1).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    if ma <= 0:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    ratio = mb / ma
    if va == 0 and vb == 0:
        return ratio, ratio
    df = (vb + ratio ** 2 * va) ** 2 / (vb ** 2 / (len(b) - 1) + ratio ** 4 * va ** 2 / (len(a) - 1))
    t2 = t_quantile(max(1, int(df)), confidence) ** 2
    den = ma * ma - t2 * va
    if den <= 0:
        return None
    root = math.sqrt(max(0.0, (ma * mb) ** 2 - den * (mb * mb - t2 * vb)))
    return (ma * mb - root) / den, (ma * mb + root) / den


#: compare's default regression threshold is ``max(NOISE_MULTIPLE x CV, MIN_THRESHOLD)``, CV of the baseline's
#: attempt rates: twice the noise keeps a same-setup pair from crossing it by chance, 3 % is the floor below
#: which a difference does not decide a purchase.
NOISE_MULTIPLE = 2.0
MIN_THRESHOLD = 0.03
#: That rule in words, for legends and JSON.
THRESHOLD_RULE = f"max({NOISE_MULTIPLE:g}\u00d7CV, {100 * MIN_THRESHOLD:g}%)"


def noise_threshold(baseline_rates: Sequence[float]) -> float | None:
    """The threshold a difference must exceed, from the measured noise: ``max(NOISE_MULTIPLE x CV, MIN_THRESHOLD)``.

    Args:
        baseline_rates: the baseline's attempt rates for one benchmark.

    Returns:
        A fraction (0.06 for 6 %), or None with fewer than two rates (no noise measured).

    Raises:
        Nothing.
    """
    cv = cv_pct(baseline_rates)
    return None if cv is None else max(NOISE_MULTIPLE * cv / 100, MIN_THRESHOLD)
