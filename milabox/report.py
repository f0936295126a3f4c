"""Summarize run folders into per-benchmark numbers and a suite score, and render them.

Scoring (see ``summarize``): a benchmark's score is its mean per-device rate, times the number of
devices it ran on when its plan is ``per_device``, times its success ratio; the suite score is the
weighted geometric mean of the benchmark scores.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from tabulate import tabulate

from milabox.errors import ConfigError
from milabox.results import Attempt, Run

#: Output formats ``format_report`` accepts.
FORMATS = ("table", "markdown", "csv", "json")

#: Version of the JSON report layout.
REPORT_FORMAT = 1

#: Per-benchmark columns, in order; also exactly the keys of each JSON benchmark object.
COLUMNS = ("name", "n", "fail", "perf", "unit", "sem_pct", "std_pct", "peak_memory_mb", "weight", "score")

_HEADERS = ("benchmark", "n", "fail", "perf", "unit", "sem %", "std %", "peak MB", "weight", "score")
_ALIGN = ("left", "right", "right", "right", "left", "right", "right", "right", "right", "right")


@dataclass
class Failure:
    """One attempt that did not succeed."""

    benchmark: str
    attempt: str  # attempt folder, e.g. "r0-d1"; "<run folder>/r0-d1" when several runs are summarized
    status: str  # "failed" or "interrupted"
    cause: str | None


@dataclass
class BenchmarkSummary:
    """One benchmark's numbers. Field names match ``COLUMNS`` (plus ``plan`` and ``devices``)."""

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

    def row(self) -> dict[str, object]:
        """The ``COLUMNS`` fields as a dict (the JSON object for this benchmark)."""
        return {key: getattr(self, key) for key in COLUMNS}


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


def summarize(runs: Sequence[Run] | Run) -> Summary:
    """Compute per-benchmark numbers and the suite score from one or more runs.

    Attempts of the same benchmark are pooled across runs. Per benchmark:

    - ``n`` attempts, ``fail`` those whose status is not ``ok``;
    - ``perf``: mean summary rate of the successful attempts (None if none);
    - ``std_pct``/``sem_pct``: sample std and std/sqrt(k) as % of the mean, over the k per-attempt
      rates when k >= 2 successful attempts, else over the single successful attempt's per-step
      rates; None when fewer than 2 values (or a zero mean);
    - ``peak_memory_mb``: max ``memory`` peak over all attempts;
    - ``score`` = perf x D x (1 - fail/n), D = distinct devices if plan is ``per_device`` else 1.

    The suite score is exp(sum w ln s / sum w) over benchmarks with weight > 0 and score > 0.
    Benchmarks with weight > 0 (or unknown: listed in a manifest but never attempted) and score 0
    are listed in ``incomplete`` instead of pulling the score to zero.

    Args:
        runs: the loaded runs (a single Run is accepted too).

    Returns:
        The Summary; benchmarks in manifest order, then any others by name.

    Raises:
        Nothing.
    """
    if isinstance(runs, Run):
        runs = [runs]
    several = len(runs) > 1

    order: list[str] = []
    by_name: dict[str, list[tuple[Run, Attempt]]] = {}
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

    rows: list[BenchmarkSummary] = []
    failures: list[Failure] = []
    for name in order:
        pairs = by_name[name]
        rows.append(_summarize_benchmark(name, [a for _, a in pairs]))
        for run, attempt in pairs:
            if not attempt.record.ok:
                label = f"{run.path.name}/{attempt.name}" if several else attempt.name
                failures.append(Failure(name, label, attempt.record.status, attempt.record.cause))

    num = den = 0.0
    incomplete = []
    for row in rows:
        if row.weight is not None and row.weight <= 0:
            continue
        if row.score > 0:
            num += row.weight * math.log(row.score)
            den += row.weight
        else:
            incomplete.append(row.name)
    score = math.exp(num / den) if den > 0 else None

    attempts = sum(r.n for r in rows)
    failed = sum(r.fail for r in rows)
    return Summary(
        benchmarks=rows,
        score=score,
        failure_rate=failed / attempts if attempts else None,
        incomplete=incomplete,
        failures=failures,
        attempts=attempts,
        failed=failed,
    )


def _summarize_benchmark(name: str, attempts: list[Attempt]) -> BenchmarkSummary:
    if not attempts:
        return BenchmarkSummary(name, 0, 0, None, None, None, None, None, None, 0.0)
    first = attempts[0].record
    n = len(attempts)
    fail = sum(1 for a in attempts if not a.record.ok)
    ok = [a for a in attempts if a.record.ok]
    rates = [r for r in (a.rate for a in ok) if r is not None]
    perf = statistics.fmean(rates) if rates else None

    if len(rates) >= 2:
        spread = rates
    elif len(rates) == 1:
        spread = next(a.step_rates for a in ok if a.rate is not None)
    else:
        spread = []
    std_pct = sem_pct = None
    if len(spread) >= 2:
        mean = statistics.fmean(spread)
        if mean != 0:
            std = statistics.stdev(spread)
            std_pct = 100.0 * std / abs(mean)
            sem_pct = std_pct / math.sqrt(len(spread))

    peaks = [p for p in (a.peak_memory_mb for a in attempts) if p is not None]
    devices = len({a.record.device for a in attempts}) if first.plan == "per_device" else 1
    score = perf * devices * (1 - fail / n) if perf is not None else 0.0
    return BenchmarkSummary(
        name=name,
        n=n,
        fail=fail,
        perf=perf,
        unit=first.unit,
        sem_pct=sem_pct,
        std_pct=std_pct,
        peak_memory_mb=max(peaks) if peaks else None,
        weight=first.weight,
        score=score,
        plan=first.plan,
        devices=devices,
    )


# --------------------------------------------------------------------------------------------
# Rendering


def format_report(summary: Summary, fmt: str = "table") -> str:
    """Render a Summary.

    - ``table``: a plain-text table, a ``Failures:`` section if any, and a score line;
    - ``markdown``: the same as GitHub-flavoured Markdown;
    - ``csv``: a header of ``COLUMNS`` and one row a benchmark, numbers unrounded, None as empty;
    - ``json``: ``{"format": 1, "score", "failure_rate", "incomplete", "benchmarks": [{COLUMNS}],
      "failures": [{"benchmark", "attempt", "status", "cause"}]}``, numbers unrounded.

    Table and Markdown round perf and score to 4 significant digits, percentages to one
    decimal, memory to whole MB; None shows as ``-``.

    Args:
        summary: from ``summarize``.
        fmt: one of ``FORMATS``.

    Returns:
        The text, ending with a newline.

    Raises:
        ConfigError: ``fmt`` is not one of ``FORMATS``.
    """
    if fmt == "table":
        return _format_text(summary, markdown=False)
    if fmt == "markdown":
        return _format_text(summary, markdown=True)
    if fmt == "csv":
        return _format_csv(summary)
    if fmt == "json":
        return _format_json(summary)
    raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _format_text(summary: Summary, markdown: bool) -> str:
    tablefmt = "github" if markdown else "simple"
    body = [
        [
            _md_escape(b.name) if markdown else b.name,
            str(b.n),
            str(b.fail),
            _sig(b.perf),
            (_md_escape(b.unit) if markdown else b.unit) if b.unit else "-",
            _pct(b.sem_pct),
            _pct(b.std_pct),
            "-" if b.peak_memory_mb is None else f"{b.peak_memory_mb:.0f}",
            "-" if b.weight is None else f"{b.weight:g}",
            _sig(b.score),
        ]
        for b in summary.benchmarks
    ]
    parts = [
        tabulate(body, headers=_HEADERS, tablefmt=tablefmt, disable_numparse=True, colalign=_ALIGN)
        if body
        else "(no benchmarks)"
    ]
    if summary.failures:
        rows = [
            [
                _md_escape(f.benchmark) if markdown else f.benchmark,
                f.attempt,
                _md_escape(_cause(f)) if markdown else _cause(f),
            ]
            for f in summary.failures
        ]
        heading = "**Failures:**" if markdown else "Failures:"
        parts.append(
            heading
            + "\n\n"
            + tabulate(rows, headers=("benchmark", "attempt", "cause"), tablefmt=tablefmt, disable_numparse=True)
        )
    line = _score_line(summary)
    parts.append(f"**{line}**" if markdown else line)
    return "\n\n".join(parts) + "\n"


def _score_line(summary: Summary) -> str:
    if summary.score is None:
        score = "n/a"
    else:
        score = _sig(summary.score)
    if summary.incomplete:
        score += f" (incomplete: {', '.join(summary.incomplete)})"
    if summary.failure_rate is None:
        rate = "n/a (no attempts)"
    else:
        rate = f"{100 * summary.failure_rate:.1f}% ({summary.failed} of {summary.attempts} attempts)"
    return f"Score: {score}   Failure rate: {rate}"


def _format_csv(summary: Summary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for b in summary.benchmarks:
        writer.writerow(["" if v is None else v for v in b.row().values()])
    return out.getvalue()


def _format_json(summary: Summary) -> str:
    doc = {
        "format": REPORT_FORMAT,
        "score": summary.score,
        "failure_rate": summary.failure_rate,
        "incomplete": list(summary.incomplete),
        "benchmarks": [b.row() for b in summary.benchmarks],
        "failures": [
            {"benchmark": f.benchmark, "attempt": f.attempt, "status": f.status, "cause": f.cause}
            for f in summary.failures
        ],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _cause(f: Failure) -> str:
    return " ".join((f.cause or f.status).split())  # one line, whatever the host wrote


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _sig(value: float | None, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, never in exponent notation; None as ``-``."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) != math.floor(math.log10(abs(value))):
        decimals -= 1  # rounding carried into a new digit, e.g. 9.9996 -> 10.00 -> 10.0
        rounded = round(value, decimals)
    return f"{rounded:.{max(decimals, 0)}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
