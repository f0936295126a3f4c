"""Statistics of measured rates: mean, median, spread, confidence intervals, significance, scores.

Everything here works on plain lists of floats, so the report, the comparison and ``run --until-sem``
share one definition of sem% and of "significantly different". SciPy supplies the Student t
quantiles (``scipy.special``; the common 95 % ones from a table of its values) and Welch's t-test
(``scipy.stats``, imported only by ``compare``).
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The confidence level of every interval milabox reports.
CONFIDENCE = 0.95

#: Below this p-value (and with disjoint intervals) a difference counts as significant.
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
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():  # near-identical samples: SciPy warns about precision, the p-value is fine
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def intervals_overlap(a: Stats, b: Stats) -> bool | None:
    """Whether the confidence intervals of ``a`` and ``b`` overlap (None when either has none)."""
    if a.ci_low is None or b.ci_low is None:
        return None
    return a.ci_low <= b.ci_high and b.ci_low <= a.ci_high


def significant(a: Stats | None, b: Stats | None, alpha: float = ALPHA) -> tuple[bool | None, float | None]:
    """Is the difference between the means of ``a`` and ``b`` significant?

    Conservative on purpose: significant only when the confidence intervals are disjoint AND
    Welch's t-test gives p < ``alpha``. Either criterion alone failing means "not significant".

    Args:
        a, b: the two samples' statistics.
        alpha: the test's threshold.

    Returns:
        (significant, p-value): significant is None (unknown) when either side has fewer than two
        values; the p-value is None when it could not be computed.

    Raises:
        Nothing.
    """
    if a is None or b is None or a.n < 2 or b.n < 2:
        return None, None
    p = welch_p(a.values, b.values)
    overlap = intervals_overlap(a, b)
    return (not overlap and p is not None and p < alpha), p


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
