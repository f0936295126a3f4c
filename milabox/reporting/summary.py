"""Summarize run folders into per-benchmark numbers and a suite score, and render them.

Scoring (see ``summarize``): a benchmark's score is its mean per-device rate, times the number of
devices it ran on when its plan is ``per_device``, times its success ratio; the suite score is the
weighted geometric mean of the benchmark scores. Against a baseline run, each benchmark is a unitless
ratio to the baseline and the suite score is the weighted geometric mean of the ratios.
The JSON layout is documented in docs/report-schema.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from milabox.errors import ConfigError
from milabox.reporting.stats import Stats, describe, weighted_geomean
from milabox.rundir.read import Attempt, Run

#: Output formats ``format_report`` accepts.
FORMATS = ("table", "markdown", "csv", "json")

#: Version of the JSON report layout (docs/report-schema.md). 2: benchmarks gained stats, energy, ratio.
REPORT_FORMAT = 2

#: The core per-benchmark fields: the first keys of each JSON benchmark object and the first CSV columns.
COLUMNS = ("name", "n", "fail", "perf", "unit", "sem_pct", "std_pct", "peak_memory_mb", "weight", "score")

#: Every CSV column: the core ones, then statistics, energy and the ratio to a baseline.
CSV_COLUMNS = COLUMNS + ("median", "ci95_low", "ci95_high", "stats_source", "stats_n", "energy_kj",
                         "mean_power_w", "items_per_j", "ratio")

#: Where the host's telemetry sampler writes an attempt's samples (one JSON object a line).
TELEMETRY_NAME = "telemetry.jsonl"


@dataclass
class Failure:
    """One attempt that did not succeed."""

    benchmark: str
    attempt: str  # attempt folder, e.g. "r0-d1"; "<run folder>/r0-d1" when several runs are summarized
    status: str  # "failed" or "interrupted"
    cause: str | None


@dataclass
class BenchmarkEnergy:
    """Energy of a benchmark where the host sampled power while its containers ran.

    All three describe the measured steps (warm-up and start-up excluded), the same work as the rate;
    an attempt whose samples do not cover that window counts with its whole sampled span instead.

    Attributes:
        energy_kj: energy of the measured steps of one attempt (mean over attempts with telemetry).
        mean_power_w: mean power over the measured steps (mean over attempts).
        items_per_j: perf / mean_power_w: the unit's items per joule (TFLOP/J for TFLOPS).
        attempts: successful attempts that had telemetry.
        source: the telemetry's own description of where the energy came from.
    """

    energy_kj: float | None
    mean_power_w: float | None
    items_per_j: float | None
    attempts: int
    source: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON form (docs/report-schema.md)."""
        return {"energy_kj": self.energy_kj, "mean_power_w": self.mean_power_w, "items_per_j": self.items_per_j,
                "attempts": self.attempts, "source": self.source}


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
    if baseline is not None:
        order += [b.name for b in baseline.benchmarks if b.name not in by_name]

    energy_of = _energy_reader()
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


def _summarize_benchmark(name: str, attempts: list[Attempt],
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
        energy=_benchmark_energy(ok, perf, energy_of) if energy_of else None,
    )


# --------------------------------------------------------------------------------------------
# Energy


def _energy_reader() -> Callable[..., object] | None:
    """``milabox.telemetry.energy.attempt_energy``, or None where telemetry is not installed."""
    try:
        from milabox.execution.telemetry.energy import attempt_energy
    except ImportError:
        return None
    return attempt_energy


def _benchmark_energy(ok: list[Attempt], perf: float | None,
                      energy_of: Callable[..., object]) -> BenchmarkEnergy | None:
    joules: list[float] = []
    powers: list[float] = []
    sources: list[str] = []
    for attempt in ok:
        if not (attempt.path / TELEMETRY_NAME).is_file():
            continue  # the cheap check first: reports read thousands of attempts
        window = attempt.measured_window
        # The measured steps only (warm-up and start-up excluded): the same work as the rate.
        energy = energy_of(Path(attempt.path), *window) if window else None
        if energy is None:
            energy = energy_of(Path(attempt.path))  # samples too sparse for the window: the whole attempt
        if energy is None:
            continue
        if _finite(energy.joules):
            joules.append(energy.joules)
        if _finite(energy.mean_power_w) and energy.mean_power_w > 0:
            powers.append(energy.mean_power_w)
        if energy.source:
            sources.append(str(energy.source))
    if not joules and not powers:
        return None
    power = statistics.fmean(powers) if powers else None
    return BenchmarkEnergy(
        energy_kj=statistics.fmean(joules) / 1000 if joules else None,
        mean_power_w=power,
        items_per_j=perf / power if perf is not None and power else None,
        attempts=max(len(joules), len(powers)),
        source=", ".join(dict.fromkeys(sources)) or None,
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# Rendering


def format_report(summary: Summary, fmt: str = "table") -> str:
    """Render a Summary.

    - ``table``: a plain-text table, a ``Failures:`` section if any, and a score line;
    - ``markdown``: the same as GitHub-flavoured Markdown;
    - ``csv``: a header of ``CSV_COLUMNS`` and one row a benchmark, numbers unrounded, None as empty;
    - ``json``: the versioned layout of docs/report-schema.md, numbers unrounded.

    Table and Markdown round perf, median, interval and score to 4 significant digits, percentages to
    one decimal, memory to whole MB; None shows as ``-``. Energy columns appear when any benchmark has
    telemetry, a ratio column with a baseline.

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
        return json.dumps(report_dict(summary), indent=2, allow_nan=False) + "\n"
    raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


def table_rows(summary: Summary, markdown: bool = False) -> tuple[list[str], list[str], list[list[str]]]:
    """The report table as text cells (also used by the HTML report).

    Args:
        summary: from ``summarize``.
        markdown: escape ``|`` and ``\\`` for Markdown cells.

    Returns:
        (headers, column alignments ``left``/``right``, rows).
    """
    esc = _md_escape if markdown else (lambda text: text)
    energy = any(b.energy for b in summary.benchmarks)
    ratio = summary.baseline is not None
    headers = ["benchmark", "n", "fail", "perf", "median", "95% CI", "unit", "sem %", "std %", "peak MB",
               "weight", "score"]
    align = ["left", "right", "right", "right", "right", "right", "left", "right", "right", "right", "right",
             "right"]
    if energy:
        headers += ["energy kJ", "power W", "per joule"]
        align += ["right"] * 3
    if ratio:
        headers += ["ratio"]
        align += ["right"]
    body = []
    for b in summary.benchmarks:
        s = b.stats
        cells = [
            esc(b.name),
            str(b.n),
            str(b.fail),
            sig(b.perf),
            sig(s.median) if s else "-",
            _ci(s),
            esc(b.unit) if b.unit else "-",
            _pct(b.sem_pct),
            _pct(b.std_pct),
            "-" if b.peak_memory_mb is None else f"{b.peak_memory_mb:.0f}",
            "-" if b.weight is None else f"{b.weight:g}",
            sig(b.score),
        ]
        if energy:
            e = b.energy
            cells += [sig(e.energy_kj, 3) if e else "-", sig(e.mean_power_w, 3) if e else "-",
                      (sig(e.items_per_j, 3) + " " + esc(_per_joule(b.unit))) if e and e.items_per_j else "-"]
        if ratio:
            cells += ["-" if b.ratio is None else f"{sig(b.ratio, 3)}x"]
        body.append(cells)
    return headers, align, body


def _format_text(summary: Summary, markdown: bool) -> str:
    tablefmt = "github" if markdown else "simple"
    headers, align, body = table_rows(summary, markdown)
    parts = [
        tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True, colalign=align)
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
    lines = score_lines(summary)
    parts.append("\n".join(f"**{line}**" if markdown else line for line in lines))
    return "\n\n".join(parts) + "\n"


def score_lines(summary: Summary) -> list[str]:
    """The suite-level lines: the score (and the score against the baseline), then the failure rate.

    Args:
        summary: from ``summarize``.

    Returns:
        One or two lines; the last one starts with ``Score:``.
    """
    lines = []
    if summary.baseline is not None:
        b = summary.baseline
        text = "n/a" if b.score is None else f"{sig(b.score, 3)}x"
        lines.append(f"Against baseline {b.label}: {text}{_incomplete(b.incomplete, b.incomplete_reasons)}")
    score = "n/a" if summary.score is None else sig(summary.score)
    score += _incomplete(summary.incomplete, summary.incomplete_reasons)
    if summary.failure_rate is None:
        rate = "n/a (no attempts)"
    else:
        rate = f"{100 * summary.failure_rate:.1f}% ({summary.failed} of {summary.attempts} attempts)"
    lines.append(f"Score: {score}   Failure rate: {rate}")
    return lines


def _incomplete(names: list[str], reasons: dict[str, str]) -> str:
    if not names:
        return ""
    return " (incomplete: " + ", ".join(f"{n} [{reasons[n]}]" if n in reasons else n for n in names) + ")"


def _format_csv(summary: Summary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for b in summary.benchmarks:
        writer.writerow(["" if v is None else v for v in b.csv_row()])
    return out.getvalue()


def report_dict(summary: Summary) -> dict[str, object]:
    """The JSON report as a dict (docs/report-schema.md, format ``REPORT_FORMAT``).

    Args:
        summary: from ``summarize``.

    Returns:
        A JSON-serializable dict.
    """
    b = summary.baseline
    return {
        "format": REPORT_FORMAT,
        "runs": list(summary.runs),
        "score": summary.score,
        "failure_rate": summary.failure_rate,
        "incomplete": list(summary.incomplete),
        "incomplete_reasons": dict(summary.incomplete_reasons),
        "baseline": None if b is None else {"label": b.label, "score": b.score, "incomplete": list(b.incomplete),
                                            "incomplete_reasons": dict(b.incomplete_reasons)},
        "benchmarks": [row.to_dict() for row in summary.benchmarks],
        "failures": [
            {"benchmark": f.benchmark, "attempt": f.attempt, "status": f.status, "cause": f.cause}
            for f in summary.failures
        ],
    }


def _cause(f: Failure) -> str:
    return " ".join((f.cause or f.status).split())  # one line, whatever the host wrote


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _per_joule(unit: str | None) -> str:
    """The unit of items per joule: ``items/s`` -> ``items/J``, ``TFLOPS`` -> ``TFLOP/J``."""
    if not unit:
        return "/J"
    if unit.endswith("/s"):
        return unit[:-2] + "/J"
    if unit.upper().endswith("FLOPS"):
        return unit[:-1] + "/J"
    return f"({unit})/W"


def _ci(stats: Stats | None) -> str:
    if stats is None or stats.ci_low is None:
        return "-"
    return f"[{sig(stats.ci_low)}, {sig(stats.ci_high)}]"


def sig(value: float | None, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, never in exponent notation; None as ``-``.

    Args:
        value: the number.
        digits: significant digits.

    Returns:
        The text, e.g. ``0.1722`` or ``406.4``.
    """
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
