"""Render a Summary in the four report formats: a plain-text table, Markdown, CSV and JSON.

The JSON layout is documented in docs/report-schema.md. The table cells and score lines are shared with
the HTML report (milabox.reporting.html).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING

from tabulate import tabulate

from milabox.errors import ConfigError

if TYPE_CHECKING:
    # Annotations only: summary.py imports COLUMNS from here, so a runtime import would be circular.
    from milabox.reporting.summary import Failure, Summary
    from milabox.stats import Stats

#: Output formats ``format_report`` accepts.
FORMATS = ("table", "markdown", "csv", "json")

#: Version of the JSON report layout (docs/report-schema.md). 2: benchmarks gained stats, energy, ratio.
#: 3: stats over attempts only; jitter_pct, warnings; zeroed_by, coverage, sizes; side-by-side reports.
#: 4: node rates of concurrent batches: device_rates, node_rate, spread; net_energy_kj, idle_power_w.
REPORT_FORMAT = 4

#: The core per-benchmark fields: the first keys of each JSON benchmark object and the first CSV columns.
COLUMNS = ("name", "n", "fail", "perf", "unit", "sem_pct", "std_pct", "peak_memory_mb", "weight", "score")

#: Every CSV column: the core ones, then statistics, energy and the ratio to a baseline.
CSV_COLUMNS = COLUMNS + ("median", "ci95_low", "ci95_high", "stats_source", "stats_n", "energy_kj",
                         "mean_power_w", "items_per_j", "ratio", "jitter_pct", "warnings", "devices", "spread",
                         "node_rate", "net_energy_kj")

#: The line under every report of smoke-size runs.
SMOKE_NOTE = "Smoke sizes prove the path, not the hardware: do not compare or buy on these numbers."

#: What marks a row with warnings in the table (the warnings are listed under it).
WARNING_MARK = " !"


def format_report(summary: Summary, fmt: str = "table") -> str:
    """Render a Summary.

    - ``table``: a plain-text table, its warnings and the smoke-size note if any, each device's rate and their
      sum for rows of several devices, the idle power if sampled, a ``Failures:`` section if any, the coverage
      line and the score line;
    - ``markdown``: the same as GitHub-flavoured Markdown;
    - ``csv``: a header of ``CSV_COLUMNS`` and one row a benchmark, numbers unrounded, None as empty;
    - ``json``: the versioned layout of docs/report-schema.md, numbers unrounded.

    Table and Markdown round perf, median, interval and score to 4 significant digits, percentages to
    one decimal, memory to whole MB; None shows as ``-``; the interval of a single attempt shows as ``n=1``.
    Energy columns appear when any benchmark has telemetry (a net column above idle with ``idle.jsonl``), a
    ratio column with a baseline.

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
    esc = md_escape if markdown else (lambda text: text)
    energy = any(b.energy for b in summary.benchmarks)
    ratio = summary.baseline is not None
    net = any(b.energy and b.energy.net_energy_kj is not None for b in summary.benchmarks)
    headers = ["benchmark", "n", "fail", "devices", "spread", "perf", "median", "95% CI", "unit", "sem %", "std %",
               "jitter %", "peak MB", "weight", "score"]
    align = ["left", *["right"] * 7, "left", *["right"] * 6]
    if energy:
        headers += ["energy kJ", *(["net kJ"] if net else []), "power W", "per joule"]
        align += ["right"] * (4 if net else 3)
    if ratio:
        headers += ["ratio"]
        align += ["right"]
    body = []
    for b in summary.benchmarks:
        s = b.stats
        cells = [
            esc(b.name) + (WARNING_MARK if b.warnings else ""),
            str(b.n),
            str(b.fail),
            str(b.devices),
            "-" if b.spread is None else f"{b.spread:.2f}",
            sig(b.perf),
            sig(s.median) if s else "-",
            _ci(s),
            esc(b.unit) if b.unit else "-",
            _pct(b.sem_pct),
            _pct(b.std_pct),
            _pct(b.jitter_pct),
            "-" if b.peak_memory_mb is None else f"{b.peak_memory_mb:.0f}",
            "-" if b.weight is None else f"{b.weight:g}",
            sig(b.score),
        ]
        if energy:
            e = b.energy
            cells += [sig(e.energy_kj, 3) if e else "-", *([sig(e.net_energy_kj, 3) if e else "-"] if net else []),
                      sig(e.mean_power_w, 3) if e else "-",
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
    notes = note_lines(summary)
    if notes:
        parts.append("\n".join(md_escape(line) if markdown else line for line in notes))
    if summary.failures:
        rows = [
            [
                md_escape(f.benchmark) if markdown else f.benchmark,
                f.attempt,
                md_escape(_cause(f)) if markdown else _cause(f),
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


def note_lines(summary: Summary) -> list[str]:
    """The lines under the table: each row's warnings (rows marked ``WARNING_MARK``), then the smoke note.

    Args:
        summary: from ``summarize``.

    Returns:
        The lines, possibly none.
    """
    lines = [f"{WARNING_MARK.strip()} {b.name}: {w}" for b in summary.benchmarks for w in b.warnings]
    if "smoke" in summary.sizes:
        lines.append(SMOKE_NOTE)
    return lines + device_lines(summary)


def device_lines(summary: Summary) -> list[str]:
    """Each device's rate and the node's, for the rows of several devices; then the idle power if sampled.

    Args:
        summary: from ``summarize``.

    Returns:
        Lines such as ``Devices of matmul-fp32: 0 = 0.1722, 1 = 0.1650; node = 0.3372 TFLOPS``, possibly none.
    """
    lines = [f"Devices of {b.name}: " + ", ".join(f"{d} = {sig(r)}" for d, r in b.device_rates.items())
             + f"; node = {sig(b.node_rate)} {b.unit or ''}".rstrip()
             for b in summary.benchmarks if len(b.device_rates) > 1]
    if summary.idle_power_w:
        lines.append("Idle power: " + ", ".join(f"{d} = {sig(w, 3)} W" for d, w in summary.idle_power_w.items()))
    return lines


def coverage_line(summary: Summary) -> str:
    """What the score is over: the weighted rows, and the benchmarks the run skipped (excluded for the vendor, or needing more devices or nodes), with why.

    Args:
        summary: from ``summarize``.

    Returns:
        One line starting with ``Coverage:``.
    """
    rows = ", ".join(summary.rows) or "none"
    text = f"Coverage: {len(summary.rows)} weighted row(s) ({rows})"
    if summary.excluded:
        text += "; excluded: " + ", ".join(f"{k} [{v}]" for k, v in summary.excluded.items())
    return text


def score_lines(summary: Summary) -> list[str]:
    """The suite-level lines: the score against the baseline, the coverage, then the score and failure rate.

    Args:
        summary: from ``summarize``.

    Returns:
        Two or three lines; the last one starts with ``Score:``.
    """
    lines = []
    if summary.baseline is not None:
        b = summary.baseline
        text = "n/a" if b.score is None else f"{sig(b.score, 3)}x"
        left = [n for n in b.incomplete if n not in b.zeroed_by]
        lines.append(f"Against baseline {b.label}: {text}{_zeroed(b.zeroed_by, b.incomplete_reasons)}"
                     f"{_incomplete(left, b.incomplete_reasons, 'left out')}")
    lines.append(coverage_line(summary))
    score = "n/a" if summary.score is None else sig(summary.score)
    score += _zeroed(summary.zeroed_by, summary.incomplete_reasons)
    if summary.failure_rate is None:
        rate = "n/a (no attempts)"
    else:
        rate = f"{100 * summary.failure_rate:.1f}% ({summary.failed} of {summary.attempts} attempts)"
    lines.append(f"Score: {score}   Failure rate: {rate}")
    return lines


def _zeroed(names: list[str], reasons: dict[str, str]) -> str:
    return _incomplete(names, reasons, "zeroed by")


def _incomplete(names: list[str], reasons: dict[str, str], what: str) -> str:
    if not names:
        return ""
    return f" ({what}: " + ", ".join(f"{n} [{reasons[n]}]" if n in reasons else n for n in names) + ")"


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
        "zeroed_by": summary.zeroed_by,
        "coverage": {"rows": list(summary.rows), "excluded": dict(summary.excluded)},
        "sizes": list(summary.sizes),
        "idle_power_w": dict(summary.idle_power_w),
        "baseline": None if b is None else {"label": b.label, "score": b.score, "incomplete": list(b.incomplete),
                                            "incomplete_reasons": dict(b.incomplete_reasons),
                                            "zeroed_by": list(b.zeroed_by)},
        "benchmarks": [row.to_dict() for row in summary.benchmarks],
        "failures": [
            {"benchmark": f.benchmark, "attempt": f.attempt, "status": f.status, "cause": f.cause}
            for f in summary.failures
        ],
    }


def _cause(f: Failure) -> str:
    return " ".join((f.cause or f.status).split())  # one line, whatever the host wrote


def md_escape(text: str) -> str:
    """``text`` with ``|`` and ``\\`` escaped for a Markdown cell."""
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
    if stats is not None and stats.n == 1:
        return "n=1"
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
