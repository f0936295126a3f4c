"""Render a comparison (milabox.reporting.compare): table, markdown, CSV and JSON, with the legend that says
which test was used, the regressions, what could not be tested and why, the suite interval and the setup
differences."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from typing import TYPE_CHECKING

from tabulate import tabulate

from milabox.errors import ConfigError
from milabox.reporting.formats import sig
from milabox.stats import MIN_ATTEMPTS, THRESHOLD_RULE

if TYPE_CHECKING:  # compare imports this module; the types are only for annotations
    from milabox.reporting.compare import Cell, Comparison, SuiteInterval

#: Output formats ``format_comparison`` accepts.
FORMATS = ("table", "markdown", "csv", "json")

#: Version of the JSON comparison layout (docs/report-schema.md).
COMPARE_FORMAT = 2


def format_comparison(comparison: Comparison, fmt: str = "table") -> str:
    """Render a Comparison.

    - ``table`` / ``markdown``: one row per benchmark, one column per run (perf, +/- the 95 % interval's
      half-width in % over attempt rates, the ratio to the first run and flags), a legend naming the test
      and threshold, the regressions and untested benchmarks, the suite interval, and the setup differences;
    - ``csv``: one row per benchmark and run, numbers unrounded;
    - ``json``: the layout of docs/report-schema.md ("Comparison").

    Args:
        comparison: from ``compare``.
        fmt: one of ``FORMATS``.

    Returns:
        The text, ending with a newline.

    Raises:
        ConfigError: ``fmt`` is not one of ``FORMATS``.
    """
    if fmt in ("table", "markdown"):
        return _format_text(comparison, fmt == "markdown")
    if fmt == "csv":
        return _format_csv(comparison)
    if fmt == "json":
        return json.dumps(comparison_dict(comparison), indent=2, allow_nan=False) + "\n"
    raise ConfigError(f"unknown comparison format {fmt!r}; choose one of {', '.join(FORMATS)}")


def cell_text(cell: Cell, first: bool) -> str:
    """A cell as text: ``0.0930 ±2.1% 0.53x REGRESSION`` (the first run's cell has no ratio or flag)."""
    s = cell.summary
    if s.perf is None:
        return ("FAILED" if cell.regression else "failed") if s.n else "missing"
    text = sig(s.perf)
    stats = cell.stats
    ci = stats.ci_pct if stats else None
    if ci is not None:
        text += f" ±{ci:.1f}%"
    if first or cell.ratio is None:
        return text
    text += f" {sig(cell.ratio, 3)}x"
    if cell.regression:
        text += " REGRESSION"
    elif cell.improvement:
        text += " faster"
    elif cell.significant is None:
        text += " ?"
    elif not cell.significant:
        text += " ~"
    return text


def _format_text(c: Comparison, markdown: bool) -> str:
    esc = (lambda t: t.replace("\\", "\\\\").replace("|", "\\|")) if markdown else (lambda t: t)
    headers = ["benchmark", "unit", *(esc(label) for label in c.runs)]
    body = [[esc(row.name), esc(row.unit or "-"), *(esc(cell_text(cell, i == 0)) for i, cell in
                                                      enumerate(row.cells))] for row in c.rows]
    parts = [tabulate(body, headers=headers, tablefmt="github" if markdown else "simple", disable_numparse=True)
             if body else "(no benchmarks)"]
    parts.append(textwrap.fill(legend(c), width=110))
    for lines in (regression_lines(c), suite_lines(c)):
        parts.append("\n".join(textwrap.fill(line, width=110, initial_indent="", subsequent_indent="    ")
                               for line in lines))
    parts.append("\n".join(difference_lines(c, markdown)))
    return "\n\n".join(parts) + "\n"


def threshold_text(c: Comparison) -> str:
    """The threshold as applied: ``5% (--threshold)`` or ``max(2×CV, 3%) of a's attempt rates = m 6.2%, k 3%``."""
    if c.threshold is not None:
        return f"{100 * c.threshold:g}% (--threshold)"
    applied = [(row.name, next((cell.verdict.threshold for cell in row.cells[1:] if cell.verdict is not None
                                and cell.verdict.threshold is not None), None)) for row in c.rows]
    values = ", ".join(f"{name} {100 * t:.1f}%" for name, t in applied if t is not None) or "no noise measured"
    return f"{THRESHOLD_RULE} of {c.runs[0]}'s attempt rates = {values}"


def legend(c: Comparison) -> str:
    """What the numbers and flags mean, and the test that was used."""
    return (f"perf ±95% CI half-width over attempt rates; ratio to {c.runs[0]}. Test: Welch t on attempt rates "
            f"(p < {c.alpha:g}) and the {100 * (1 - c.alpha):g}% CI of the ratio by Fieller excluding 1; "
            f"threshold {threshold_text(c)}. ~ not significant; ? too few attempts to test (fewer than "
            f"{MIN_ATTEMPTS} successful on a side); REGRESSION: significantly slower beyond the threshold "
            f"(or failed); faster: significantly faster beyond the threshold")


def regression_lines(c: Comparison) -> list[str]:
    """One line per regression (or one saying there is none), then one per benchmark too few attempts left untested."""
    found = [(row.name, cell) for row in c.rows for cell in row.cells if cell.regression]
    lines = [f"Regressions against {c.runs[0]}:"] if found else [f"No regression against {c.runs[0]}."]
    for name, cell in found:
        if cell.verdict is None:
            lines.append(f"  {name} in {cell.run}: failed")
        else:
            lo, hi = cell.verdict.ratio_ci or (None, None)
            lines.append(f"  {name} in {cell.run}: {sig(cell.ratio, 3)}x (95% CI {sig(lo, 3)}-{sig(hi, 3)}, "
                         f"threshold {100 * (cell.verdict.threshold or 0):.1f}%)")
    for row in c.rows:
        for cell in row.cells[1:]:
            if cell.verdict is not None and cell.verdict.untested:
                lines.append(f"Not tested: {row.name} in {cell.run}: {cell.verdict.untested}; nothing flagged.")
    return lines


def suite_lines(c: Comparison) -> list[str]:
    """The suite score of each later run against the first, with bootstrap intervals and P(A > B)."""
    return [_suite_line(c.runs[0], s) for s in c.suite]


def _suite_line(first: str, s: SuiteInterval) -> str:
    if s.untested:
        return f"Suite score {s.run} vs {first}: no interval: {s.untested}."
    return (f"Suite score (weighted geometric mean of mean attempt rates, {len(s.benchmarks)} benchmarks): "
            f"{first} {sig(s.score_a)} [{_pair(s.ci_a)}], {s.run} {sig(s.score_b)} [{_pair(s.ci_b)}], "
            f"ratio {sig(s.ratio, 3)}x [{_pair(s.ratio_ci, 3)}], P({first} > {s.run}) = {s.p_a_greater:.3f} "
            "(95% bootstrap percentiles, attempts resampled within each benchmark, seeded)")


def _pair(pair: tuple[float, float] | None, digits: int = 4) -> str:
    return "-" if pair is None else f"{sig(pair[0], digits)}, {sig(pair[1], digits)}"


def difference_lines(c: Comparison, markdown: bool = False) -> list[str]:
    """The fairness disclosure: every setup difference between the runs, one line each."""
    if not c.differences:
        return [("Setup: no difference in vendor, runtime, image, torch, precision, batch size, parameters, "
                 "overrides or environment.")]
    lines = ["Setup differences (fairness disclosure):"]
    bullet = "- " if markdown else "  "
    for d in c.differences:
        where = f" [{', '.join(d.benchmarks)}]" if d.benchmarks else " [run]"
        values = ", ".join(f"{label}={value}" for label, value in zip(c.runs, d.values, strict=True))
        line = f"{bullet}{d.what}{where}: {values}"
        lines.append(line.replace("|", "\\|") if markdown else line)
    return lines


_CSV_COLUMNS = ("benchmark", "unit", "run", "status", "n", "fail", "attempts_ok", "perf", "ci95_low", "ci95_high",
                "sem_pct", "cv_pct", "ratio", "ratio_ci95_low", "ratio_ci95_high", "p_value", "threshold",
                "significant", "untested", "regression", "improvement")


def _format_csv(c: Comparison) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for row in c.rows:
        for cell in row.cells:
            d = {"benchmark": row.name, "unit": row.unit, **cell.to_dict()}
            d["ci95_low"], d["ci95_high"] = d["ci95"] or (None, None)
            d["ratio_ci95_low"], d["ratio_ci95_high"] = d["ratio_ci95"] or (None, None)
            writer.writerow(["" if d[k] is None else d[k] for k in _CSV_COLUMNS])
    return out.getvalue()


def comparison_dict(c: Comparison) -> dict[str, object]:
    """The JSON comparison as a dict (docs/report-schema.md)."""
    return {
        "format": COMPARE_FORMAT,
        "threshold": c.threshold,
        "threshold_rule": "--threshold" if c.threshold is not None else THRESHOLD_RULE,
        "alpha": c.alpha,
        "test": "Welch t on attempt rates; ratio CI by Fieller",
        "runs": [{"label": label, "path": path} for label, path in zip(c.runs, c.paths, strict=True)],
        "benchmarks": [{"name": row.name, "unit": row.unit, "cells": [cell.to_dict() for cell in row.cells]}
                       for row in c.rows],
        "regressions": [{"benchmark": n, "run": r, "ratio": ratio} for n, r, ratio in c.regressions],
        "suite": [{"run": s.run, "benchmarks": list(s.benchmarks), "score_a": s.score_a, "score_b": s.score_b,
                   "ci95_a": _list(s.ci_a), "ci95_b": _list(s.ci_b), "ratio": s.ratio,
                   "ratio_ci95": _list(s.ratio_ci), "p_a_greater": s.p_a_greater, "untested": s.untested}
                  for s in c.suite],
        "differences": [{"what": d.what, "benchmarks": d.benchmarks,
                         "values": dict(zip(c.runs, d.values, strict=True))} for d in c.differences],
    }


def _list(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else list(pair)
