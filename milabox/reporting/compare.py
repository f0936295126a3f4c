"""Compare runs benchmark by benchmark: ratios to the first run, significance, regressions, fairness.

A difference is significant only when the 95 % confidence intervals are disjoint and Welch's t-test gives
p < 0.05 (``milabox.stats.significant``); a regression is a significant slowdown beyond the threshold,
or a benchmark that failed where the first run measured it. Every difference between the runs' setups
that can explain a gap (vendor, image, torch, precision, batch size, environment, ...) is listed.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from tabulate import tabulate

from milabox.errors import ConfigError
from milabox.reporting.formats import sig
from milabox.reporting.summary import BenchmarkSummary, summarize
from milabox.rundir.model import AttemptResult, Run
from milabox.stats import ALPHA, significant

#: Output formats ``format_comparison`` accepts.
FORMATS = ("table", "markdown", "csv", "json")

#: Version of the JSON comparison layout (docs/report-schema.md).
COMPARE_FORMAT = 1

#: Default regression threshold: slower than the first run by more than 5 %.
THRESHOLD = 0.05

# Container variables milabox sets itself the same way in every run; they are not setup differences.
_HOUSEKEEPING_ENV = frozenset({"MILABOX_CONFIG", "MILABOX_RESULTS", "MILABOX_BENCHMARK", "HOME"})
# Config keys reported under their own name rather than as "config <key>".
_NAMED_CONFIG = {"precision": "precision", "batch_size": "batch size"}


@dataclass
class Cell:
    """One benchmark in one run, measured against the first run."""

    run: str  # the run's label
    summary: BenchmarkSummary
    ratio: float | None = None  # perf / first run's perf
    significant: bool | None = None  # None: too few values to tell (first run's cell: None)
    p_value: float | None = None
    regression: bool = False
    improvement: bool = False

    @property
    def status(self) -> str:
        """``ok`` (a rate was measured), ``failed`` (attempts, no rate) or ``missing`` (no attempt)."""
        if self.summary.perf is not None:
            return "ok"
        return "failed" if self.summary.n else "missing"

    def to_dict(self) -> dict[str, object]:
        """The JSON form (docs/report-schema.md)."""
        s = self.summary.stats
        return {"run": self.run, "status": self.status, "n": self.summary.n, "fail": self.summary.fail,
                "perf": self.summary.perf, "sem_pct": self.summary.sem_pct,
                "ci95": None if s is None or s.ci_low is None else [s.ci_low, s.ci_high],
                "stats_source": s.source if s else None, "ratio": self.ratio, "p_value": self.p_value,
                "significant": self.significant, "regression": self.regression, "improvement": self.improvement}


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
    threshold: float
    alpha: float = ALPHA

    @property
    def regressions(self) -> list[tuple[str, str, float | None]]:
        """(benchmark, run label, ratio) of every regression."""
        return [(row.name, c.run, c.ratio) for row in self.rows for c in row.cells if c.regression]


def compare(runs: Sequence[Run], threshold: float = THRESHOLD, alpha: float = ALPHA) -> Comparison:
    """Compare each later run with the first one.

    Args:
        runs: two or more loaded runs; the first is the reference.
        threshold: a significant slowdown by more than this fraction is a regression (0.05: 5 %).
        alpha: the Welch t-test threshold.

    Returns:
        The Comparison: a row per benchmark (those of the first run first), a cell per run, and the
        setup differences between the runs.

    Raises:
        ConfigError: fewer than two runs, or a threshold outside [0, 1).
    """
    if len(runs) < 2:
        raise ConfigError("compare needs at least two run folders")
    if not 0 <= threshold < 1:
        raise ConfigError(f"--threshold must be a fraction in [0, 1), e.g. 0.05 for 5 %, not {threshold!r}")
    labels = _labels(runs)
    summaries = [summarize(run) for run in runs]
    names: list[str] = []
    for s in summaries:
        names += [b.name for b in s.benchmarks if b.name not in names]
    by_run = [{b.name: b for b in s.benchmarks} for s in summaries]

    rows = []
    for name in names:
        cells = [Cell(label, by.get(name) or _absent(name)) for label, by in zip(labels, by_run, strict=True)]
        first = cells[0]
        for cell in cells[1:]:
            _judge(first, cell, threshold, alpha)
        unit = next((c.summary.unit for c in cells if c.summary.unit), None)
        rows.append(Row(name, unit, cells))
    return Comparison(runs=labels, paths=[str(r.path) for r in runs], rows=rows,
                      differences=differences(runs, labels), threshold=threshold, alpha=alpha)


def _absent(name: str) -> BenchmarkSummary:
    return BenchmarkSummary(name, 0, 0, None, None, None, None, None, None, 0.0)


def _labels(runs: Sequence[Run]) -> list[str]:
    labels: list[str] = []
    for i, run in enumerate(runs, 1):
        label = run.path.name or str(run.path)
        labels.append(label if label not in labels else f"{label}#{i}")
    return labels


def _judge(first: Cell, cell: Cell, threshold: float, alpha: float) -> None:
    ref, this = first.summary, cell.summary
    if ref.perf is None:
        return
    if this.perf is None:
        cell.regression = this.n > 0  # measured in the first run, failing now; a missing one is only listed
        return
    cell.ratio = this.perf / ref.perf
    cell.significant, cell.p_value = significant(ref.stats, this.stats, alpha)
    if cell.significant:
        cell.regression = cell.ratio < 1 - threshold
        cell.improvement = cell.ratio > 1 + threshold


# --------------------------------------------------------------------------------------------
# Fairness disclosure


def differences(runs: Sequence[Run], labels: Sequence[str]) -> list[Difference]:
    """Every setting in which the runs differ: vendor, size, host, milabox version and commit (per run);
    image id, torch version, precision, batch size, other benchmark parameters, container environment,
    threads and device (per benchmark, from the records' container request and the ``meta`` event).

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


# --------------------------------------------------------------------------------------------
# Rendering


def format_comparison(comparison: Comparison, fmt: str = "table") -> str:
    """Render a Comparison.

    - ``table`` / ``markdown``: one row per benchmark, one column per run (perf, +/- the 95 % interval's
      half-width in %, the ratio to the first run and flags), a legend, the regressions, and the
      differences between the runs;
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
    ci = s.stats.ci_pct if s.stats else None
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
    parts.append("\n".join(regression_lines(c)))
    parts.append("\n".join(difference_lines(c, markdown)))
    return "\n\n".join(parts) + "\n"


def legend(c: Comparison) -> str:
    """What the numbers and flags mean."""
    return (f"perf ±95% CI half-width; ratio to {c.runs[0]}; ~ not significant (CIs overlap or Welch "
            f"p >= {c.alpha:g}); ? too few values to test; REGRESSION: significantly slower by more than "
            f"{100 * c.threshold:g}% (or failed); faster: significantly faster by more than {100 * c.threshold:g}%")


def regression_lines(c: Comparison) -> list[str]:
    """One line per regression, or one line saying there is none."""
    found = c.regressions
    if not found:
        return [f"No regression beyond {100 * c.threshold:g}% against {c.runs[0]}."]
    lines = [f"Regressions beyond {100 * c.threshold:g}% against {c.runs[0]}:"]
    for name, run, ratio in found:
        lines.append(f"  {name} in {run}: " + ("failed" if ratio is None else f"{ratio:.3g}x"))
    return lines


def difference_lines(c: Comparison, markdown: bool = False) -> list[str]:
    """The fairness disclosure: every setup difference between the runs, one line each."""
    if not c.differences:
        return ["Setup: no difference in vendor, image, torch, precision, batch size, parameters or environment."]
    lines = ["Setup differences (fairness disclosure):"]
    bullet = "- " if markdown else "  "
    for d in c.differences:
        where = f" [{', '.join(d.benchmarks)}]" if d.benchmarks else " [run]"
        values = ", ".join(f"{label}={value}" for label, value in zip(c.runs, d.values, strict=True))
        line = f"{bullet}{d.what}{where}: {values}"
        lines.append(line.replace("|", "\\|") if markdown else line)
    return lines


def _format_csv(c: Comparison) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ["benchmark", "unit", "run", "status", "n", "fail", "perf", "ci95_low", "ci95_high", "sem_pct",
               "ratio", "p_value", "significant", "regression", "improvement"]
    writer.writerow(columns)
    for row in c.rows:
        for cell in row.cells:
            d = cell.to_dict()
            ci = d["ci95"] or [None, None]
            values = [row.name, row.unit, cell.run, d["status"], d["n"], d["fail"], d["perf"], ci[0], ci[1],
                      d["sem_pct"], d["ratio"], d["p_value"], d["significant"], d["regression"], d["improvement"]]
            writer.writerow(["" if v is None else v for v in values])
    return out.getvalue()


def comparison_dict(c: Comparison) -> dict[str, object]:
    """The JSON comparison as a dict (docs/report-schema.md)."""
    return {
        "format": COMPARE_FORMAT,
        "threshold": c.threshold,
        "alpha": c.alpha,
        "runs": [{"label": label, "path": path} for label, path in zip(c.runs, c.paths, strict=True)],
        "benchmarks": [{"name": row.name, "unit": row.unit, "cells": [cell.to_dict() for cell in row.cells]}
                       for row in c.rows],
        "regressions": [{"benchmark": n, "run": r, "ratio": ratio} for n, r, ratio in c.regressions],
        "differences": [{"what": d.what, "benchmarks": d.benchmarks,
                         "values": dict(zip(c.runs, d.values, strict=True))} for d in c.differences],
    }
