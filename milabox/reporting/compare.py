"""Compare runs benchmark by benchmark: ratios to the first run, significance, regressions, fairness.

Significance comes only from attempt-level samples (one rate per successful attempt, repeats and devices):
the per-step rates of a single attempt are autocorrelated and carry no run-to-run variance, so a side with
fewer than ``MIN_ATTEMPTS`` successful attempts is "too few attempts" and flags nothing. A difference is
significant when Welch's t-test on the attempt rates gives p < alpha and the 95 % interval of the ratio
B/A (Fieller, ``milabox.stats.ratio_ci``) excludes 1; a regression is a significant slowdown beyond the
threshold (by default ``max(2 x CV, 3 %)``, CV the first run's coefficient of variation of attempt rates),
or a benchmark that failed where the first run measured it. The suite score gets a seeded bootstrap interval
and P(A > B). Every difference between the runs' setups that can explain a gap is listed. Rendering is in
milabox.reporting.compare_format.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from milabox.errors import ConfigError
from milabox.reporting.compare_format import (
    FORMATS,
    cell_text,
    comparison_dict,
    difference_lines,
    format_comparison,
    legend,
    regression_lines,
)
from milabox.reporting.compare_suite import SuiteInterval, run_samples, suite_bootstrap, suite_score
from milabox.reporting.summary import BenchmarkSummary, Summary, summarize
from milabox.rundir.model import AttemptResult, Run
from milabox.stats import ALPHA, MIN_ATTEMPTS, Stats, describe, noise_threshold, ratio_ci, welch_p

__all__ = ["FORMATS", "Cell", "Comparison", "Difference", "Row", "SuiteInterval", "Verdict", "cell_text",
           "compare", "comparison_dict", "difference_lines", "differences", "format_comparison", "judge_rates",
           "legend", "noise_threshold", "regression_lines", "suite_bootstrap", "suite_score"]

# Container variables milabox sets itself the same way in every run; they are not setup differences.
_HOUSEKEEPING_ENV = frozenset({"MILABOX_CONFIG", "MILABOX_RESULTS", "MILABOX_BENCHMARK", "HOME"})
# Config keys reported under their own name rather than as "config <key>".
_NAMED_CONFIG = {"precision": "precision", "batch_size": "batch size"}


@dataclass(frozen=True)
class Verdict:
    """What the attempt rates of one benchmark in two runs say (``judge_rates``)."""

    ratio: float | None  # mean B / mean A
    ratio_ci: tuple[float, float] | None  # Fieller interval of the ratio at 1 - alpha
    p_value: float | None  # Welch's t-test on the attempt rates
    significant: bool | None  # None: too few attempts to test
    threshold: float | None  # the size a regression or improvement must exceed (fraction)
    regression: bool = False
    improvement: bool = False
    untested: str | None = None  # why it was not tested, with the numbers


def judge_rates(a: Sequence[float], b: Sequence[float], threshold: float | None = None,
                alpha: float = ALPHA) -> Verdict:
    """The compare rule for one benchmark: is B (``b``) significantly and materially slower or faster than A?

    Significant: at least ``MIN_ATTEMPTS`` rates on each side, Welch p < ``alpha`` and the ``1 - alpha``
    Fieller interval of mean(b) / mean(a) excluding 1. Regression: significant, the interval below 1 and
    the ratio below ``1 - threshold``; improvement: the mirror image above 1.

    Args:
        a: A's successful attempt rates (the baseline).
        b: B's successful attempt rates.
        threshold: the size (fraction) beyond which a significant difference counts; None: ``noise_threshold(a)``.
        alpha: the test's level.

    Returns:
        The Verdict; with too few attempts ``significant`` is None, nothing is flagged and ``untested`` says
        how many there were.
    """
    ratio = statistics.fmean(b) / statistics.fmean(a) if a and b and statistics.fmean(a) > 0 else None
    limit = threshold if threshold is not None else noise_threshold(a)
    if len(a) < MIN_ATTEMPTS or len(b) < MIN_ATTEMPTS:
        why = (f"too few attempts: {len(a)} successful in the first run and {len(b)} in this one, a test needs "
               f"{MIN_ATTEMPTS} on each side (--repeat {MIN_ATTEMPTS} or more)")
        return Verdict(ratio, None, None, None, limit, untested=why)
    ci = ratio_ci(a, b, 1 - alpha)
    p = welch_p(a, b)
    significant = ci is not None and (ci[1] < 1 or ci[0] > 1) and p is not None and p < alpha
    assert limit is not None  # a has >= 2 rates
    return Verdict(ratio, ci, p, significant, limit,
                   regression=significant and ratio is not None and ci[1] < 1 and ratio < 1 - limit,
                   improvement=significant and ratio is not None and ci[0] > 1 and ratio > 1 + limit)


@dataclass
class Cell:
    """One benchmark in one run, measured against the first run."""

    run: str  # the run's label
    summary: BenchmarkSummary
    rates: tuple[float, ...] = ()  # the successful attempts' rates: the only sample tests use
    verdict: Verdict | None = None  # against the first run (None: first run, or nothing to compare)
    regression: bool = False  # the verdict's, or failed where the first run measured a rate

    @property
    def stats(self) -> Stats | None:
        """Statistics over the attempt rates (None without a rate; spread None with one attempt)."""
        return describe(self.rates)

    @property
    def ratio(self) -> float | None:
        """perf / first run's perf."""
        return self.verdict.ratio if self.verdict else None

    @property
    def significant(self) -> bool | None:
        """Significant against the first run; None when untested (too few attempts, first run)."""
        return self.verdict.significant if self.verdict else None

    @property
    def p_value(self) -> float | None:
        """Welch's p-value against the first run."""
        return self.verdict.p_value if self.verdict else None

    @property
    def improvement(self) -> bool:
        """Significantly faster than the first run beyond the threshold."""
        return bool(self.verdict and self.verdict.improvement)

    @property
    def status(self) -> str:
        """``ok`` (a rate was measured), ``failed`` (attempts, no rate) or ``missing`` (no attempt)."""
        if self.summary.perf is not None:
            return "ok"
        return "failed" if self.summary.n else "missing"

    def to_dict(self) -> dict[str, object]:
        """The JSON form (docs/report-schema.md)."""
        s, v = self.stats, self.verdict
        return {"run": self.run, "status": self.status, "n": self.summary.n, "fail": self.summary.fail,
                "attempts_ok": len(self.rates), "perf": self.summary.perf,
                "sem_pct": s.sem_pct if s else None, "cv_pct": s.std_pct if s else None,
                "ci95": None if s is None or s.ci_low is None else [s.ci_low, s.ci_high],
                "stats_source": "attempts" if self.rates else None, "ratio": self.ratio,
                "ratio_ci95": list(v.ratio_ci) if v and v.ratio_ci else None, "p_value": self.p_value,
                "threshold": v.threshold if v else None, "significant": self.significant,
                "untested": v.untested if v else None, "regression": self.regression,
                "improvement": self.improvement}


@dataclass
class Row:
    """One benchmark across the runs."""

    name: str
    unit: str | None
    cells: list[Cell]


@dataclass
class Difference:
    """One setting that differs between runs, for the benchmarks it concerns (empty: the whole run)."""

    what: str
    values: list[str]  # one per run, in run order ("-" where the run lacks the benchmark)
    benchmarks: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """The result of ``compare``."""

    runs: list[str]  # labels, in the order given
    paths: list[str]
    rows: list[Row]
    differences: list[Difference]
    threshold: float | None  # --threshold; None: per benchmark from the first run's noise (THRESHOLD_RULE)
    alpha: float = ALPHA
    suite: list[SuiteInterval] = field(default_factory=list)  # one per later run

    @property
    def regressions(self) -> list[tuple[str, str, float | None]]:
        """(benchmark, run label, ratio) of every regression."""
        return [(row.name, c.run, c.ratio) for row in self.rows for c in row.cells if c.regression]


def compare(runs: Sequence[Run], threshold: float | None = None, alpha: float = ALPHA) -> Comparison:
    """Compare each later run with the first one (see the module docstring for the rule).

    Args:
        runs: two or more loaded runs; the first is the reference.
        threshold: a significant slowdown by more than this fraction is a regression (0.05: 5 %); None
            (the default): ``max(2 x CV, 3 %)`` per benchmark, CV from the first run's attempt rates.
        alpha: the level of the Welch test and of the ratio's interval.

    Returns:
        The Comparison: a row per benchmark (those of the first run first), a cell per run, the suite
        intervals, and the setup differences between the runs.

    Raises:
        ConfigError: fewer than two runs, or a threshold outside [0, 1).
    """
    if len(runs) < 2:
        raise ConfigError("compare needs at least two run folders")
    if threshold is not None and not 0 <= threshold < 1:
        raise ConfigError(f"--threshold must be a fraction in [0, 1), e.g. 0.05 for 5 %, not {threshold!r}")
    labels = _labels(runs)
    summaries = [summarize(run) for run in runs]
    rates = [attempt_rates(run) for run in runs]
    names: list[str] = []
    for s in summaries:
        names += [b.name for b in s.benchmarks if b.name not in names]
    by_run = [{b.name: b for b in s.benchmarks} for s in summaries]

    rows = []
    for name in names:
        cells = [Cell(label, by.get(name) or _absent(name), tuple(r.get(name, ())))
                 for label, by, r in zip(labels, by_run, rates, strict=True)]
        for cell in cells[1:]:
            _judge(cells[0], cell, threshold, alpha)
        unit = next((c.summary.unit for c in cells if c.summary.unit), None)
        rows.append(Row(name, unit, cells))
    weights = _weights(summaries)
    samples = [run_samples(run) for run in runs]
    suite = [suite_bootstrap(samples[0], other, weights, (labels[0], label))
             for label, other in zip(labels[1:], samples[1:], strict=True)]
    return Comparison(runs=labels, paths=[str(r.path) for r in runs], rows=rows,
                      differences=differences(runs, labels), threshold=threshold, alpha=alpha, suite=suite)


def attempt_rates(run: Run) -> dict[str, list[float]]:
    """Each benchmark's successful attempt rates (every repeat and device), in attempt order.

    Args:
        run: a loaded run.

    Returns:
        benchmark name -> rates (only benchmarks with at least one successful attempt with a rate).
    """
    out: dict[str, list[float]] = {}
    for attempt in run.attempts:
        if attempt.record.ok and attempt.rate is not None:
            out.setdefault(attempt.benchmark, []).append(attempt.rate)
    return out


def _absent(name: str) -> BenchmarkSummary:
    return BenchmarkSummary(name, 0, 0, None, None, None, None, None, None, 0.0)


def _labels(runs: Sequence[Run]) -> list[str]:
    labels: list[str] = []
    for i, run in enumerate(runs, 1):
        label = run.path.name or str(run.path)
        labels.append(label if label not in labels else f"{label}#{i}")
    return labels


def _judge(first: Cell, cell: Cell, threshold: float | None, alpha: float) -> None:
    if first.summary.perf is None or not first.rates:
        return
    if not cell.rates:
        cell.regression = cell.summary.n > 0  # measured in the first run, failing now; a missing one is only listed
        return
    cell.verdict = judge_rates(first.rates, cell.rates, threshold, alpha)
    cell.regression = cell.verdict.regression


# --------------------------------------------------------------------------------------------
# The suite score's interval


def _weights(summaries: Sequence[Summary]) -> dict[str, float]:
    """Each benchmark's weight as the report has it (``BenchmarkSummary.weight``): the first run's, else a later one's."""
    out: dict[str, float] = {}
    for s in summaries:
        for b in s.benchmarks:
            if b.weight is not None:
                out.setdefault(b.name, b.weight)
    return out


# --------------------------------------------------------------------------------------------
# Fairness disclosure


def differences(runs: Sequence[Run], labels: Sequence[str]) -> list[Difference]:
    """Every setting in which the runs differ: vendor, size, host, milabox version, commit, runtime and
    parameter overrides (per run); image id, torch version, precision, batch size, other benchmark
    parameters, container environment, threads and device (per benchmark, from the records' container
    request and the ``meta`` event).

    Args:
        runs: the runs.
        labels: their labels.

    Returns:
        The differences; a per-benchmark setting that differs the same way for several benchmarks is
        one Difference naming them all.
    """
    out = []
    for what, attr in (("vendor", "vendor"), ("size", "size"), ("host", "host"),
                       ("milabox version", "milabox_version"), ("source commit", "source_commit")):
        values = [_show(getattr(run.manifest, attr)) for run in runs]
        if len(set(values)) > 1:
            out.append(Difference(what, values))
    # Manifest keys newer than some runs: runtime (docker or native) and overrides (benchmark -> parameters);
    # a run from before overrides existed had none.
    for what, values in (("runtime", [_show(run.manifest.raw.get("runtime")) for run in runs]),
                         ("overrides", [_show(run.manifest.raw.get("overrides") or {}) for run in runs])):
        if len(set(values)) > 1:
            out.append(Difference(what, values))

    settings: list[dict[str, dict[str, str]]] = []  # per run: benchmark -> setting -> value
    for run in runs:
        per_bench: dict[str, list[AttemptResult]] = {}
        for attempt in run.attempts:
            per_bench.setdefault(attempt.benchmark, []).append(attempt)
        settings.append({name: _settings(attempts) for name, attempts in per_bench.items()})

    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    names = list(dict.fromkeys([*(n for run in runs for n in run.manifest.benchmarks),  # manifest order first
                                *(n for s in settings for n in s)]))
    for name in names:
        present = [s.get(name) for s in settings]
        if sum(p is not None for p in present) < 2:
            continue  # only one run has it: nothing to compare
        keys = list(dict.fromkeys(k for p in present if p is not None for k in p))
        for key in keys:
            values = tuple("-" if p is None else p.get(key, "(unset)") for p in present)
            if len({v for v in values if v != "-"}) > 1:
                grouped.setdefault((key, values), []).append(name)
    for (key, values), benches in grouped.items():
        out.append(Difference(key, list(values), benches))
    return out


def _settings(attempts: list[AttemptResult]) -> dict[str, str]:
    """A benchmark's setup in one run; values that vary between its attempts are joined with `` / ``."""
    seen: dict[str, list[str]] = {}

    def put(key: str, value: object) -> None:
        if value is None:
            return
        text = _show(value)
        bucket = seen.setdefault(key, [])
        if text not in bucket:
            bucket.append(text)

    for a in attempts:
        put("image id", a.record.image_id)
        meta, config = a.meta, a.config
        put("torch", meta.get("torch"))
        device = meta.get("device")
        if isinstance(device, dict):
            put("device", device.get("name"))
            put("device count", device.get("count"))
        put("threads", meta.get("threads"))
        put("precision", config.get("precision", meta.get("precision")))
        for key, value in config.items():
            if key not in ("benchmark", "group", "size", "precision"):  # size: a run-level difference
                put(_NAMED_CONFIG.get(key, f"config {key}"), value)
        for key, value in a.environment.items():
            if key not in _HOUSEKEEPING_ENV:
                put(f"environment {key}", value)
    return {key: " / ".join(values) for key, values in seen.items()}


def _show(value: object) -> str:
    if value is None:
        return "(unknown)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
