"""Summarize run folders into per-benchmark numbers and a suite score.

Scoring (see ``summarize``): a benchmark's score is its mean per-device rate, times the number of
devices it ran on when its plan is ``per_device``, times its success ratio; the suite score is the
weighted geometric mean of the benchmark scores. Against a baseline run, each benchmark is a unitless
ratio to the baseline and the suite score is the weighted geometric mean of the ratios.
Rendering is in milabox.reporting.formats, energy in milabox.reporting.energy.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from milabox.reporting.energy import BenchmarkEnergy, benchmark_energy, energy_reader
from milabox.reporting.formats import COLUMNS
from milabox.rundir.model import AttemptResult, Run
from milabox.stats import Stats, describe, weighted_geomean


@dataclass
class Failure:
    """One attempt that did not succeed."""

    benchmark: str
    attempt: str  # attempt folder, e.g. "r0-d1"; "<run folder>/r0-d1" when several runs are summarized
    status: str  # "failed" or "interrupted"
    cause: str | None


@dataclass
class BenchmarkSummary:
    """One benchmark's numbers. Field names match ``COLUMNS``, plus the details after ``score``."""

    name: str
    n: int  # attempts
    fail: int  # attempts whose status is not "ok"
    perf: float | None  # mean summary rate of successful attempts (per device)
    unit: str | None
    sem_pct: float | None  # standard error of the mean, % of the mean
    std_pct: float | None  # sample standard deviation, % of the mean
    peak_memory_mb: float | None
    weight: float | None  # None only for a benchmark in a manifest that has no attempt at all
    score: float  # perf x D x (1 - fail/n); 0 when perf is None
    plan: str | None = None
    devices: int = 0  # D: distinct devices when plan is per_device, else 1 (0 when no attempt)
    stats: Stats | None = None  # over attempt rates (k >= 2) or the single attempt's step rates
    energy: BenchmarkEnergy | None = None
    ratio: float | None = None  # score / (baseline perf x baseline D); only with a baseline
    baseline_perf: float | None = None

    def row(self) -> dict[str, object]:
        """The ``COLUMNS`` fields as a dict."""
        return {key: getattr(self, key) for key in COLUMNS}

    def to_dict(self) -> dict[str, object]:
        """The JSON object for this benchmark: ``COLUMNS`` first, then plan, devices, stats, energy, ratio."""
        return {**self.row(), "plan": self.plan, "devices": self.devices,
                "stats": self.stats.to_dict() if self.stats else None,
                "energy": self.energy.to_dict() if self.energy else None,
                "ratio": self.ratio, "baseline_perf": self.baseline_perf}

    def csv_row(self) -> list[object]:
        """Values in ``CSV_COLUMNS`` order (None for unknown)."""
        s, e = self.stats, self.energy
        extra = [s.median if s else None, s.ci_low if s else None, s.ci_high if s else None,
                 s.source if s else None, s.n if s else None,
                 e.energy_kj if e else None, e.mean_power_w if e else None, e.items_per_j if e else None, self.ratio]
        return [*self.row().values(), *extra]


@dataclass
class Baseline:
    """The suite against a baseline: weighted geometric mean of the benchmarks' ratios."""

    label: str  # the baseline run folder(s)
    score: float | None
    incomplete: list[str] = field(default_factory=list)
    incomplete_reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class Summary:
    """The whole report: per-benchmark rows and the suite-level numbers."""

    benchmarks: list[BenchmarkSummary]
    score: float | None  # weighted geometric mean over weighted benchmarks with a score > 0
    failure_rate: float | None  # failed attempts / attempts, None when there are no attempts
    incomplete: list[str] = field(default_factory=list)  # weighted benchmarks left out of `score`
    failures: list[Failure] = field(default_factory=list)
    attempts: int = 0
    failed: int = 0
    incomplete_reasons: dict[str, str] = field(default_factory=dict)  # name -> why it was left out
    baseline: Baseline | None = None
    runs: list[str] = field(default_factory=list)  # the run folders summarized


def summarize(runs: Sequence[Run] | Run, baseline: Summary | None = None, baseline_label: str = "") -> Summary:
    """Compute per-benchmark numbers and the suite score from one or more runs.

    Attempts of the same benchmark are pooled across runs. Per benchmark:

    - ``n`` attempts, ``fail`` those whose status is not ``ok``;
    - ``perf``: mean summary rate of the successful attempts (None if none);
    - ``stats`` (mean, median, std, sem, 95 % Student-t confidence interval), and ``std_pct``/``sem_pct``
      from it: over the k per-attempt rates (repeats and devices) when k >= 2 successful attempts,
      else over the single successful attempt's per-step rates; spread None when fewer than 2 values;
    - ``peak_memory_mb``: max ``memory`` peak over all attempts;
    - ``score`` = perf x D x (1 - fail/n), D = distinct devices if plan is ``per_device`` else 1;
    - ``energy`` where the attempts have telemetry (see ``BenchmarkEnergy``);
    - with a baseline: ``ratio`` = score / (baseline perf x baseline D), so perf / baseline perf when both
      ran on one device without failures.

    The suite score is exp(sum w ln s / sum w) over benchmarks with weight > 0 and score > 0.
    Benchmarks with weight > 0 (or unknown: listed in a manifest but never attempted) and score 0
    are listed in ``incomplete`` (with the reason in ``incomplete_reasons``) instead of pulling the
    score to zero. The baseline score is the same mean over ratios; a weighted benchmark without a ratio
    (failed or missing here or in the baseline) makes it incomplete the same way.

    Args:
        runs: the loaded runs (a single Run is accepted too).
        baseline: the baseline's own Summary (``summarize(baseline_runs)``), or None.
        baseline_label: how to name the baseline in the report (default: its run folders).

    Returns:
        The Summary; benchmarks in manifest order, then any others by name, then those only the
        baseline has.

    Raises:
        Nothing.
    """
    if isinstance(runs, Run):
        runs = [runs]
    several = len(runs) > 1

    order: list[str] = []
    by_name: dict[str, list[tuple[Run, AttemptResult]]] = {}
    for run in runs:
        for name in run.manifest.benchmarks:
            if name not in by_name:
                order.append(name)
                by_name[name] = []
    extra: set[str] = set()
    for run in runs:
        for attempt in run.attempts:
            name = attempt.benchmark
            if name not in by_name:
                extra.add(name)
                by_name[name] = []
            by_name[name].append((run, attempt))
    order += sorted(extra)
    if baseline is not None:
        order += [b.name for b in baseline.benchmarks if b.name not in by_name]

    energy_of = energy_reader()
    rows: list[BenchmarkSummary] = []
    failures: list[Failure] = []
    for name in order:
        pairs = by_name.get(name, [])
        row = _summarize_benchmark(name, [a for _, a in pairs], energy_of)
        rows.append(row)
        for run, attempt in pairs:
            if not attempt.record.ok:
                label = f"{run.path.name}/{attempt.name}" if several else attempt.name
                failures.append(Failure(name, label, attempt.record.status, attempt.record.cause))

    reasons = {row.name: _why_no_score(row) for row in rows if _weighted(row) and row.score <= 0}
    score = weighted_geomean((row.score, row.weight) for row in rows if _weighted(row) and row.weight)

    attempts = sum(r.n for r in rows)
    failed = sum(r.fail for r in rows)
    return Summary(
        benchmarks=rows,
        score=score,
        failure_rate=failed / attempts if attempts else None,
        incomplete=list(reasons),
        failures=failures,
        attempts=attempts,
        failed=failed,
        incomplete_reasons=reasons,
        baseline=_against(rows, baseline, baseline_label) if baseline is not None else None,
        runs=[str(r.path) for r in runs],
    )


def _weighted(row: BenchmarkSummary) -> bool:
    # Unknown weight (listed in a manifest, never attempted) counts as weighted: it was meant to run.
    return row.weight is None or row.weight > 0


def _why_no_score(row: BenchmarkSummary) -> str:
    if row.n == 0:
        return "not run"
    if row.fail == row.n:
        return f"all {row.n} attempt(s) failed"
    return "no rate reported"


def _against(rows: list[BenchmarkSummary], baseline: Summary, label: str) -> Baseline:
    """Fill each row's ratio to the baseline and compute the suite's weighted geometric mean of ratios."""
    base = {b.name: b for b in baseline.benchmarks}
    reasons: dict[str, str] = {}
    pairs = []
    for row in rows:
        ref = base.get(row.name)
        if row.weight is None and ref is not None:
            row.weight = ref.weight  # a benchmark that only the baseline ran keeps its weight
        if ref is not None and ref.perf is not None:
            row.baseline_perf = ref.perf
            if row.score > 0:
                row.ratio = row.score / (ref.perf * max(ref.devices, 1))
        if not _weighted(row):
            continue
        if row.ratio is not None:
            pairs.append((row.ratio, row.weight or 0.0))
        elif row.score <= 0:
            reasons[row.name] = _why_no_score(row)
        elif ref is None:
            reasons[row.name] = "not in the baseline"
        else:
            reasons[row.name] = "no rate in the baseline"
    return Baseline(label=label or ", ".join(baseline.runs), score=weighted_geomean(pairs),
                    incomplete=list(reasons), incomplete_reasons=reasons)


def _summarize_benchmark(name: str, attempts: list[AttemptResult],
                         energy_of: Callable[..., object] | None) -> BenchmarkSummary:
    if not attempts:
        return BenchmarkSummary(name, 0, 0, None, None, None, None, None, None, 0.0)
    first = attempts[0].record
    n = len(attempts)
    fail = sum(1 for a in attempts if not a.record.ok)
    ok = [a for a in attempts if a.record.ok and a.rate is not None]
    rates = [a.rate for a in ok]
    perf = statistics.fmean(rates) if rates else None

    if len(rates) >= 2:
        stats = describe(rates, "attempts")
    elif len(rates) == 1:
        stats = describe(ok[0].step_rates, "steps")
    else:
        stats = None

    peaks = [p for p in (a.peak_memory_mb for a in attempts) if p is not None]
    devices = len({a.record.device for a in attempts}) if first.plan == "per_device" else 1
    score = perf * devices * (1 - fail / n) if perf is not None else 0.0
    return BenchmarkSummary(
        name=name,
        n=n,
        fail=fail,
        perf=perf,
        unit=first.unit,
        sem_pct=stats.sem_pct if stats else None,
        std_pct=stats.std_pct if stats else None,
        peak_memory_mb=max(peaks) if peaks else None,
        weight=first.weight,
        score=score,
        plan=first.plan,
        devices=devices,
        stats=stats,
        energy=benchmark_energy(ok, perf, energy_of) if energy_of else None,
    )
