"""Several runs' reports side by side, never pooled (``milabox report RUN RUN``), and whether runs may be pooled."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from tabulate import tabulate

from milabox.errors import ConfigError
from milabox.reporting.formats import (
    CSV_COLUMNS,
    FORMATS,
    REPORT_FORMAT,
    WARNING_MARK,
    md_escape,
    note_lines,
    report_dict,
    score_lines,
    sig,
)
from milabox.reporting.summary import Summary, not_comparable
from milabox.rundir.model import Run


def format_side_by_side(summaries: list[Summary], fmt: str = "table", setup_note: str | None = None) -> str:
    """Render several runs' summaries side by side, never pooled: one perf column per run, each run's
    coverage and score line, and which pairs of scores may be ranked (``not_comparable``).

    - ``table``/``markdown``: the perf table, the notes, a ``[i] RUN`` legend with each score, the comparisons;
    - ``csv``: ``CSV_COLUMNS`` preceded by a ``run`` column, the rows of each run in turn;
    - ``json``: ``{"format", "side_by_side": true, "runs", "setup", "reports", "comparisons"}``
      (docs/report-schema.md), each report as ``report_dict`` gives it.

    Args:
        summaries: one ``summarize`` result per run, in the order given.
        fmt: one of ``FORMATS``.
        setup_note: how the runs' setups differ (shown as it is), or None when they match.

    Returns:
        The text, ending with a newline.

    Raises:
        ConfigError: ``fmt`` is not one of ``FORMATS``.
    """
    pairs = [(i, j, not_comparable(summaries[i], summaries[j]))
             for i in range(len(summaries)) for j in range(i + 1, len(summaries))]
    if fmt == "json":
        doc = {"format": REPORT_FORMAT, "side_by_side": True, "runs": [r for s in summaries for r in s.runs],
               "setup": setup_note, "reports": [report_dict(s) for s in summaries],
               "comparisons": [{"a": i + 1, "b": j + 1, "comparable": why is None, "why": why} for i, j, why in pairs]}
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("run", *CSV_COLUMNS))
        for s in summaries:
            writer.writerows([", ".join(s.runs), *["" if v is None else v for v in b.csv_row()]] for b in s.benchmarks)
        return out.getvalue()
    if fmt not in ("table", "markdown"):
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    markdown = fmt == "markdown"
    esc = md_escape if markdown else (lambda text: text)
    names = list(dict.fromkeys(b.name for s in summaries for b in s.benchmarks))
    rows_of = [{b.name: b for b in s.benchmarks} for s in summaries]
    body = []
    for name in names:
        known = next(r[name] for r in rows_of if name in r)
        cells = [esc(name), esc(known.unit or "-"), "-" if known.weight is None else f"{known.weight:g}"]
        for rows in rows_of:
            b = rows.get(name)
            cells.append("-" if b is None else sig(b.perf) + (f" ({b.fail}/{b.n} failed)" if b.fail else "")
                         + (WARNING_MARK if b.warnings else ""))
        body.append(cells)
    headers = ["benchmark", "unit", "weight", *[f"perf [{i + 1}]" for i in range(len(summaries))]]
    parts = [tabulate(body, headers=headers, tablefmt="github" if markdown else "simple", disable_numparse=True,
                      colalign=["left", "left", "right", *["right"] * len(summaries)]) if body else "(no benchmarks)"]
    notes = list(dict.fromkeys(line for s in summaries for line in note_lines(s)))
    if notes:
        parts.append("\n".join(esc(line) for line in notes))
    legend = [f"[{i + 1}] {', '.join(s.runs)}: {' / '.join(score_lines(s))}" for i, s in enumerate(summaries)]
    verdicts = [f"[{i + 1}] vs [{j + 1}]: " + (f"not comparable: {why}" if why else _ranked(summaries, i, j))
                for i, j, why in pairs]
    lines = ([f"Setups differ: {setup_note}; shown side by side, never pooled"] if setup_note else []) + legend + verdicts
    parts.append("\n".join(esc(line) for line in lines))
    return "\n\n".join(parts) + "\n"


def _ranked(summaries: list[Summary], i: int, j: int) -> str:
    a, b = summaries[i].score, summaries[j].score
    if a is None or b is None:
        return "same rows, no score to rank"
    order = f"[{i + 1}] > [{j + 1}]" if a > b else f"[{j + 1}] > [{i + 1}]" if b > a else "equal"
    return f"comparable (same {len(summaries[i].rows)} weighted rows): {order}"


def setup_difference(runs: Sequence[Run]) -> tuple[str, Run, Run] | None:
    """The first setup field (``Run.setup``: vendor, host, size, images, overrides) on which runs differ.

    Args:
        runs: the loaded runs.

    Returns:
        (field, the first run, the first run that differs from it on that field), or None when all match.
    """
    for run in runs[1:]:
        for key, value in runs[0].setup.items():
            if run.setup[key] != value:
                return key, runs[0], run
    return None


def check_poolable(runs: Sequence[Run]) -> None:
    """Refuse to pool runs of different setups: their attempts are not repeats of one measurement.

    Args:
        runs: the runs to pool.

    Returns:
        None.

    Raises:
        ConfigError: two runs differ in a setup field (the message names the field, both values and runs).
    """
    diff = setup_difference(runs)
    if diff is not None:
        key, a, b = diff
        raise ConfigError(f"cannot pool {a.path} and {b.path}: their '{key}' differs ({a.setup[key]!r} vs "
                          f"{b.setup[key]!r}); pool only repeats of one setup, or drop --pool to see them side by side")
