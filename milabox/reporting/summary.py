"""Summarize run folders into per-benchmark numbers and a suite score.

Statistics: the unit of replication is the replicate (milabox.reporting.batches). Where a per_device
benchmark's attempts of one repeat ran together, one container per device (records with ``concurrent``), the
replicate is that batch and its rate is the node's: the sum of its devices' rates, a failed device adding 0.
Elsewhere (older runs, all_devices plans, one device) the replicate is the attempt. A benchmark's ``perf`` is
the mean of its successful replicates' rates, and its standard error and Student-t 95 % interval are over those
same rates, so the interval always contains ``perf``. With one replicate there is no spread and no interval
(shown as ``n=1``). The step rates within an attempt only give ``jitter_pct``, never an interval.

Scoring, one rule in which a failure never helps: a benchmark's score is perf x M x its success ratio
(successful replicates / replicates), and 0 when no attempt succeeded or it never ran. M is 1 for batches (the
sum already is the node's) and for all_devices plans; for per_device attempts that did not run together (older
runs) M is D, the devices they ran on, so that perf x M is the node's rate (``node_rate``) either way. A batch
succeeds when one of its attempts does; a partly failed batch counts its failed devices at 0 in its rate (that
is its penalty; its failed attempts are in ``fail`` and the failure list). The suite score is the weighted geometric mean of the scores of the weighted rows (weight > 0), so one
weighted row at 0 makes the suite score 0 and the report names it (``zeroed_by``): a fully failed row
scores below a partly failed one, which scores below a clean one. Against a baseline, each row is its
score / the baseline's node rate, the suite score is the same mean of those ratios, and a row at 0
zeroes it the same way; rows without a baseline rate are left out and listed. The score states its
coverage: the weighted rows it is over and the benchmarks the vendor excluded (the manifest's
``excluded``); two scores are ranked against each other only over the same rows (``not_comparable``).
Rendering is in milabox.reporting.formats, energy in milabox.reporting.energy.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from milabox.reporting.attempt_energy import idle_power
from milabox.reporting.batches import Replicate, batched, device_rates, multiplier, replicates, spread
from milabox.reporting.energy import BenchmarkEnergy, benchmark_energy
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
    perf: float | None  # mean rate of the successful replicates (batches: the node's; attempts: per device)
    unit: str | None
    sem_pct: float | None  # standard error of the mean of attempt rates, % of perf; None below 2 attempts
    std_pct: float | None  # sample standard deviation of attempt rates, % of perf; None below 2 attempts
    peak_memory_mb: float | None
    weight: float | None  # None only for a benchmark in a manifest that has no readable attempt
    score: float  # perf x M x successful/replicates (``benchmark_score``); 0 when perf is None
    plan: str | None = None
    devices: int = 0  # D: distinct devices when plan is per_device, else 1 (0 when no attempt)
    stats: Stats | None = None  # over the successful replicates' rates (source "attempts" or "batches")
    energy: BenchmarkEnergy | None = None
    ratio: float | None = None  # score / (baseline perf x baseline D); only with a baseline
    baseline_perf: float | None = None
    jitter_pct: float | None = None  # mean over attempts of the std of its step rates, % of their mean
    warnings: list[str] = field(default_factory=list)  # corrupt lines, late events, mixed units or weights
    multiplier: int = 1  # M: D for per_device attempts that did not run together, else 1
    device_rates: dict[str, float] = field(default_factory=dict)  # device -> mean rate of its successful attempts
    node_rate: float | None = None  # perf x M: the node's rate
    spread: float | None = None  # slowest device's rate / the median device's (1.0: uniform); None below 2

    def row(self) -> dict[str, object]:
        """The ``COLUMNS`` fields as a dict."""
        return {key: getattr(self, key) for key in COLUMNS}

    def to_dict(self) -> dict[str, object]:
        """The JSON object for this benchmark: ``COLUMNS`` first, then the details (docs/report-schema.md)."""
        return {**self.row(), "plan": self.plan, "devices": self.devices,
                "stats": self.stats.to_dict() if self.stats else None,
                "energy": self.energy.to_dict() if self.energy else None,
                "ratio": self.ratio, "baseline_perf": self.baseline_perf, "jitter_pct": self.jitter_pct,
                "warnings": list(self.warnings), "device_rates": dict(self.device_rates),
                "node_rate": self.node_rate, "spread": self.spread}

    def csv_row(self) -> list[object]:
        """Values in ``CSV_COLUMNS`` order (None for unknown)."""
        s, e = self.stats, self.energy
        extra = [s.median if s else None, s.ci_low if s else None, s.ci_high if s else None,
                 s.source if s else None, s.n if s else None,
                 e.energy_kj if e else None, e.mean_power_w if e else None, e.items_per_j if e else None, self.ratio,
                 self.jitter_pct, "; ".join(self.warnings) or None, self.devices, self.spread, self.node_rate,
                 e.net_energy_kj if e else None]
        return [*self.row().values(), *extra]


@dataclass
class Baseline:
    """The suite against a baseline: weighted geometric mean of the benchmarks' ratios."""

    label: str  # the baseline run folder(s)
    score: float | None
    incomplete: list[str] = field(default_factory=list)  # weighted rows at ratio 0 or without one
    incomplete_reasons: dict[str, str] = field(default_factory=dict)
    zeroed_by: list[str] = field(default_factory=list)  # weighted rows whose ratio is 0 (so the score is 0)


@dataclass
class Summary:
    """The whole report: per-benchmark rows and the suite-level numbers."""

    benchmarks: list[BenchmarkSummary]
    score: float | None  # weighted geometric mean over the weighted rows; 0 when one scores 0
    failure_rate: float | None  # failed attempts / attempts, None when there are no attempts
    incomplete: list[str] = field(default_factory=list)  # weighted rows that score 0 (== zeroed_by)
    failures: list[Failure] = field(default_factory=list)
    attempts: int = 0
    failed: int = 0
    incomplete_reasons: dict[str, str] = field(default_factory=dict)  # name -> why it scores 0
    baseline: Baseline | None = None
    runs: list[str] = field(default_factory=list)  # the run folders summarized
    rows: list[str] = field(default_factory=list)  # the weighted rows the score is over (its coverage)
    excluded: dict[str, str] = field(default_factory=dict)  # benchmark -> why the vendor excluded it
    sizes: list[str] = field(default_factory=list)  # the manifests' sizes
    idle_power_w: dict[str, float] = field(default_factory=dict)  # device -> idle watts (idle.jsonl; mean over runs)

    @property
    def zeroed_by(self) -> list[str]:
        """The weighted rows that score 0 and so make the suite score 0."""
        return list(self.incomplete)


def summarize(runs: Sequence[Run] | Run, baseline: Summary | None = None, baseline_label: str = "") -> Summary:
    """Compute per-benchmark numbers and the suite score from one or more runs (see the module docstring).

    Attempts of the same benchmark are pooled across runs (``milabox.reporting.side_by_side.check_poolable``
    says whether they may be).
    Per benchmark:

    - ``n`` attempts, ``fail`` those whose status is not ``ok`` (an unreadable record.json is one);
    - ``perf``: mean rate of the successful replicates (batches or attempts, see the module docstring);
    - ``stats`` (mean = perf, median, std, sem, 95 % Student-t interval) over those replicate rates, and
      ``std_pct``/``sem_pct`` from it; spread and interval None with one replicate;
    - ``device_rates`` (each device's mean rate), ``node_rate`` (perf x M) and ``spread`` (slowest / median);
    - ``jitter_pct``: the mean within-attempt std % of the step rates (None without 2 steps anywhere);
    - ``peak_memory_mb``: max ``memory`` peak over all attempts;
    - ``score`` = ``benchmark_score``: perf x M x successful replicates / replicates;
    - ``energy`` where the attempts have telemetry, per replicate on its own devices (``BenchmarkEnergy``),
      with the energy above idle where the run folder has ``idle.jsonl``;
    - ``warnings``: corrupt event lines, events after the summary, attempts that disagree on unit or weight;
    - with a baseline: ``ratio`` = score / the baseline's ``node_rate``.

    The suite score is exp(sum w ln s / sum w) over the rows with weight > 0 (or unknown: listed in a
    manifest but never readably attempted), and 0 when one of them scores 0; those rows are ``incomplete``
    with the reason in ``incomplete_reasons``. The baseline score is the same over ratios.

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

    idle = idle_power([run.path for run in runs])
    rows: list[BenchmarkSummary] = []
    failures: list[Failure] = []
    for name in order:
        pairs = by_name.get(name, [])
        row = _summarize_benchmark(name, [a for _, a in pairs], idle)
        rows.append(row)
        for run, attempt in pairs:
            label = f"{run.path.name}/{attempt.name}" if several else attempt.name
            if not attempt.record.ok:
                failures.append(Failure(name, label, attempt.record.status, attempt.record.cause))
            row.warnings += [f"{label}: {w}" for w in attempt.warnings]

    excluded: dict[str, str] = {}
    for run in runs:
        excluded.update({k: v for k, v in run.manifest.excluded.items() if k not in by_name})
    reasons = {row.name: _why_no_score(row) for row in rows if _weighted(row) and row.score <= 0}
    weighted = [row for row in rows if _weighted(row)]
    score = suite_of([(row.score, row.weight or 0.0) for row in weighted])
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
        rows=[row.name for row in weighted],
        excluded=excluded,
        sizes=sorted({r.manifest.size for r in runs if r.manifest.size}),
        idle_power_w=idle,
    )


def not_comparable(a: Summary, b: Summary) -> str | None:
    """Why two suite scores cannot be ranked against each other, or None when they can.

    Args:
        a, b: two summaries.

    Returns:
        None when both scores are over the same weighted rows, else ``different rows (...)`` naming the
        rows only one of them covers.
    """
    only_a = [r for r in a.rows if r not in b.rows]
    only_b = [r for r in b.rows if r not in a.rows]
    if not only_a and not only_b:
        return None
    parts = [f"only in {s.runs[0] if len(s.runs) == 1 else ', '.join(s.runs)}: {', '.join(names)}"
             for s, names in ((a, only_a), (b, only_b)) if names]
    return f"different rows ({'; '.join(parts)})"


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
    zeroed: list[str] = []
    pairs = []
    for row in rows:
        ref = base.get(row.name)
        if row.weight is None and ref is not None:
            row.weight = ref.weight  # a benchmark that only the baseline ran keeps its weight
        if ref is not None and ref.node_rate is not None:
            row.baseline_perf = ref.perf
            row.ratio = row.score / ref.node_rate
        if not _weighted(row):
            continue
        if row.ratio is not None and row.ratio > 0:
            pairs.append((row.ratio, row.weight or 0.0))
        elif row.score <= 0:  # a failure here zeroes the ratio, whatever the baseline did
            reasons[row.name] = _why_no_score(row)
            zeroed.append(row.name)
        elif ref is None:
            reasons[row.name] = "not in the baseline"
        else:
            reasons[row.name] = "no rate in the baseline"
    score = 0.0 if zeroed else weighted_geomean(pairs)
    return Baseline(label=label or ", ".join(baseline.runs), score=score, incomplete=list(reasons),
                    incomplete_reasons=reasons, zeroed_by=zeroed)


def _jitter(attempts: list[AttemptResult]) -> float | None:
    spreads = [s.std_pct for s in (describe(a.step_rates, "steps") for a in attempts)
               if s is not None and s.std_pct is not None]
    return statistics.fmean(spreads) if spreads else None


def benchmark_score(reps: Sequence[Replicate], multiplier: int = 1) -> tuple[float | None, float]:
    """A benchmark's perf and score from its replicates: the one rule the report and compare share.

    Args:
        reps: the replicates (``milabox.reporting.batches.replicates``).
        multiplier: M (see the module docstring): D for per_device attempts that did not run together, else 1.

    Returns:
        (perf: the mean rate of the successful replicates, None without one;
        score: perf x M x successful replicates / replicates, 0 when perf is None).
    """
    rates = [r.rate for r in reps if r.ok and r.rate is not None]
    perf = statistics.fmean(rates) if rates else None
    ok = sum(1 for r in reps if r.ok)
    return perf, perf * multiplier * ok / len(reps) if perf is not None else 0.0


def suite_of(scores: Sequence[tuple[float, float]]) -> float | None:
    """The suite score of weighted rows' (score, weight): 0 when one scores 0, else their weighted geometric mean.

    Args:
        scores: (score, weight > 0) of each weighted row.

    Returns:
        The score, or None without a row.
    """
    return 0.0 if any(x <= 0 for x, _ in scores) else weighted_geomean(scores)


def _summarize_benchmark(name: str, attempts: list[AttemptResult], idle: dict[str, float]) -> BenchmarkSummary:
    readable = [a.record for a in attempts if a.error is None]
    if not readable:  # no attempt, or only unreadable records: weight and unit unknown
        return BenchmarkSummary(name, len(attempts), len(attempts), None, None, None, None, None, None, 0.0,
                                plan=None, devices=0)
    first = readable[0]
    n = len(attempts)
    fail = sum(1 for a in attempts if not a.record.ok)
    ok = [a for a in attempts if a.record.ok and a.rate is not None]
    reps = replicates(attempts)
    m = multiplier(attempts)
    perf, score = benchmark_score(reps, m)
    stats = describe([r.rate for r in reps if r.ok and r.rate is not None],
                     "batches" if batched(attempts) else "attempts")
    warnings = [f"attempts disagree on {what} ({', '.join(sorted(values))}); shown: {getattr(first, what)!r}"
                for what, values in (("unit", {r.unit for r in readable}),
                                     ("weight", {f"{r.weight:g}" for r in readable})) if len(values) > 1]
    if partial := sum(1 for r in reps if 0 < r.failed < r.attempts):
        warnings.append(f"{partial} batch(es) partly failed: their failed devices count 0 in the node's rate")

    peaks = [p for p in (a.peak_memory_mb for a in attempts) if p is not None]
    devices = len({a.record.device for a in attempts}) if first.plan == "per_device" else 1
    rates = device_rates(attempts)
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
        energy=benchmark_energy([r.measured for r in reps if r.measured], perf, idle),
        jitter_pct=_jitter(ok),
        warnings=warnings,
        multiplier=m,
        device_rates=rates,
        node_rate=perf * m if perf is not None else None,
        spread=spread(rates),
    )

