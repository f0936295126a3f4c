"""``milabox report --html FILE``: one self-contained HTML file with the report's tables and plots.

Self-contained means one file that opens anywhere, offline: the CSS is inline and every plot is a PNG
embedded as a ``data:`` URI. Plots are drawn with matplotlib's Agg backend (no display needed):
each benchmark across the runs (mean and 95 % interval), the rate over time of every attempt (its
``rate`` events), and the power over time where the host sampled it (``telemetry.jsonl``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from milabox.reporting.formats import note_lines, score_lines, table_rows
from milabox.reporting.summary import Summary, summarize
from milabox.rundir.layout import TELEMETRY_NAME, write_text_atomic
from milabox.rundir.model import AttemptResult, Run

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #1d2330;
       background: #ffffff; max-width: 1400px; }
h1 { font-size: 24px; margin: 0 0 4px 0; } h2 { font-size: 18px; margin: 28px 0 8px 0; color: #23395d; }
p.meta { color: #5a6372; margin: 2px 0; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d5dae3; padding: 4px 8px; }
th { background: #23395d; color: #ffffff; text-align: left; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f3f5f9; }
.score { font-weight: 600; font-size: 15px; margin: 6px 0; }
.bad { color: #b3261e; font-weight: 600; } .good { color: #1b7f3b; }
ul.diff { font-size: 13px; }
img.plot { max-width: 100%; border: 1px solid #e3e7ee; margin: 6px 0; }
"""

# Too many lines make a plot unreadable: beyond this, attempts are drawn without a legend.
_LEGEND_MAX = 8
# A comparison table has a column per run: beyond this many runs it is not readable.
_COMPARE_MAX = 8
# Beyond this many runs, the across-runs plots label every n-th bar only.
_TICKS_MAX = 12


def write_html(path: str | os.PathLike[str], runs: Sequence[Run],
               summary: Summary | Sequence[Summary] | None = None, title: str = "milabox report") -> None:
    """Render the report of ``runs`` and write it atomically to ``path``.

    Args:
        path: the HTML file to write (its folder must exist).
        runs: the loaded runs.
        summary: their pooled Summary (computed when None), e.g. with a baseline; or one Summary a run, shown
            one after the other (runs side by side, not pooled).
        title: the page title.

    Returns:
        None.

    Raises:
        OSError: the file cannot be written.
    """
    write_text_atomic(path, render_html(runs, summary, title))


def render_html(runs: Sequence[Run], summary: Summary | Sequence[Summary] | None = None,
                title: str = "milabox report") -> str:
    """The whole HTML document as a string.

    Args:
        runs: the loaded runs.
        summary: their pooled Summary (computed when None), or one Summary a run (see ``write_html``).
        title: the page title.

    Returns:
        A complete HTML5 document with no external reference.
    """
    summaries = [summary or summarize(runs)] if summary is None or isinstance(summary, Summary) else list(summary)
    e = html.escape
    head = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body>")
    parts = [head, f"<h1>{e(title)}</h1>"]
    for run in runs:
        m = run.manifest
        facts = [f"vendor {m.vendor or '?'}", f"size {m.size or '?'}", f"host {m.host or '?'}",
                 f"started {m.started or '?'}", f"status {m.status}", f"milabox {m.milabox_version or '?'}"]
        parts.append(f"<p class=\"meta\"><b>{e(run.path.name)}</b>: {e(', '.join(facts))}</p>")

    for each in summaries:
        pooled = len(each.runs) > 1
        parts.append(f"<h2>Results, {len(each.runs)} runs pooled</h2>" if pooled else
                     "<h2>Results</h2>" if len(summaries) == 1 else f"<h2>Results, {e(', '.join(each.runs))}</h2>")
        headers, align, rows = table_rows(each)
        parts.append(_table(headers, rows, align))
        for line in [*note_lines(each), *score_lines(each)]:
            parts.append(f"<p class=\"score\">{e(line)}</p>")
        if each.failures:
            parts.append("<h2>Failures</h2>")
            parts.append(_table(["benchmark", "attempt", "cause"],
                                [[f.benchmark, f.attempt, " ".join((f.cause or f.status).split())]
                                 for f in each.failures]))

    if 1 < len(runs) <= _COMPARE_MAX:
        parts.append(_comparison_section(runs))
    elif len(runs) > _COMPARE_MAX:
        parts.append(f"<p class=\"meta\">{len(runs)} runs: too many for one comparison table; "
                     "use <code>milabox compare RUN_A RUN_B</code> on the runs of interest.</p>")

    parts.append("<h2>Each benchmark across runs</h2>")
    parts.append(_img(_plot_across_runs(runs), "mean rate of each benchmark in each run, with its 95% interval"))
    parts.append("<h2>Rate over time</h2>")
    parts.append(_img(_plot_rates(runs), "per-step rate of every attempt over time (warm-up excluded)"))
    power = _plot_power(runs)
    parts.append("<h2>Power over time</h2>")
    parts.append(_img(power, "power sampled by the host while each attempt ran") if power else
                 "<p class=\"meta\">No power samples in these runs (no telemetry.jsonl with power_w).</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _comparison_section(runs: Sequence[Run]) -> str:
    from milabox.reporting.compare import cell_text, compare, difference_lines, legend, regression_lines

    c = compare(runs)
    e = html.escape
    body = [[row.name, row.unit or "-", *(cell_text(cell, i == 0) for i, cell in enumerate(row.cells))]
            for row in c.rows]
    out = ["<h2>Comparison with the first run</h2>",
           _table(["benchmark", "unit", *c.runs], body, ["left", "left", *(["right"] * len(c.runs))]),
           f"<p class=\"meta\">{e(legend(c))}</p>"]
    regressions = regression_lines(c)
    css = "bad" if c.regressions else "good"
    out.append(f"<p class=\"{css}\">" + "<br>".join(e(line) for line in regressions) + "</p>")
    lines = difference_lines(c)
    out.append(f"<p>{e(lines[0])}</p>")
    if len(lines) > 1:
        out.append("<ul class=\"diff\">" + "".join(f"<li>{e(line.strip())}</li>" for line in lines[1:]) + "</ul>")
    return "\n".join(out)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    e = html.escape
    align = align or ["left"] * len(headers)
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    tds = {"left": "<td>", "right": '<td class="r">'}
    body = "".join("<tr>" + "".join(f"{tds.get(a, '<td>')}{e(str(v))}</td>" for v, a in zip(row, align, strict=False))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return "<p class=\"meta\">Nothing to plot.</p>"
    data = base64.b64encode(png).decode("ascii")
    return f"<img class=\"plot\" alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{data}\">"


# --------------------------------------------------------------------------------------------
# Plots


def _figure(count: int):
    """A figure with ``count`` subplots, three a row; returns (figure, flat list of used axes)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    cols = min(3, max(count, 1))
    rows = math.ceil(max(count, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.1 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _by_benchmark(runs: Sequence[Run]) -> dict[str, list[tuple[Run, AttemptResult]]]:
    """Attempts per benchmark, benchmarks in the manifests' order."""
    out: dict[str, list[tuple[Run, AttemptResult]]] = {name: [] for run in runs for name in run.manifest.benchmarks}
    for run in runs:
        for attempt in run.attempts:
            out.setdefault(attempt.benchmark, []).append((run, attempt))
    return out


def _plot_across_runs(runs: Sequence[Run]) -> bytes | None:
    per_run = [summarize(run) for run in runs]
    names = list(dict.fromkeys(b.name for s in per_run for b in s.benchmarks if b.perf is not None))
    if not names:
        return None
    fig, axes = _figure(len(names))
    labels = [run.path.name for run in runs]
    for ax, name in zip(axes, names, strict=True):
        means, lows, highs, unit = [], [], [], ""
        for s in per_run:
            row = next((b for b in s.benchmarks if b.name == name), None)
            perf = row.perf if row else None
            means.append(perf or 0.0)
            st = row.stats if row else None
            has_ci = perf is not None and st is not None and st.ci_low is not None
            lows.append(max(perf - st.ci_low, 0.0) if has_ci else 0.0)
            highs.append(max(st.ci_high - perf, 0.0) if has_ci else 0.0)
            unit = unit or (row.unit if row and row.unit else "")
        x = list(range(len(labels)))
        ax.bar(x, means, yerr=[lows, highs], capsize=4, color="#3b6fb6", edgecolor="#23395d")
        for i, mean in enumerate(means):
            if mean == 0:
                ax.annotate("no rate", (i, 0), ha="center", va="bottom", fontsize=7, color="#b3261e")
        step = math.ceil(len(labels) / _TICKS_MAX)
        ax.set_xticks(x[::step], labels[::step], rotation=30 if len(labels) > 2 else 0,
                      ha="right" if len(labels) > 2 else "center", fontsize=7)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(bottom=0)
    return _png(fig)


def _plot_rates(runs: Sequence[Run]) -> bytes | None:
    groups = {name: pairs for name, pairs in _by_benchmark(runs).items() if any(a.rate_series for _, a in pairs)}
    if not groups:
        return None
    fig, axes = _figure(len(groups))
    several = len(runs) > 1
    for ax, (name, pairs) in zip(axes, groups.items(), strict=True):
        unit = ""
        drawn = 0
        for run, attempt in pairs:
            series = attempt.rate_series
            if not series:
                continue
            t0 = series[0][0]
            label = f"{run.path.name}/{attempt.name}" if several else attempt.name
            ax.plot([t - t0 for t, _ in series], [v for _, v in series], marker=".", markersize=3, linewidth=1,
                    label=label)
            drawn += 1
            unit = unit or attempt.record.unit
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("seconds since the first measured step", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        if drawn <= _LEGEND_MAX:
            ax.legend(fontsize=6)
    return _png(fig)


def read_power(attempt: AttemptResult) -> dict[str, list[tuple[float, float]]]:
    """Power samples of an attempt from its ``telemetry.jsonl``: device -> [(time, watts)].

    Lines that are not JSON objects with a numeric ``time`` and ``power_w`` are skipped (a cut last
    line, samples without power).

    Args:
        attempt: the attempt.

    Returns:
        The series per device, in file order; {} without telemetry.
    """
    try:
        text = (Path(attempt.path) / TELEMETRY_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        t, w = obj.get("time"), obj.get("power_w")
        if _num(t) and _num(w):
            out.setdefault(str(obj.get("device", "?")), []).append((float(t), float(w)))
    return out


def _num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plot_power(runs: Sequence[Run]) -> bytes | None:
    groups: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {}
    several = len(runs) > 1
    for name, pairs in _by_benchmark(runs).items():
        for run, attempt in pairs:
            for device, series in read_power(attempt).items():
                label = (f"{run.path.name}/" if several else "") + f"{attempt.name} {device}"
                groups.setdefault(name, []).append((label, series))
    if not groups:
        return None
    fig, axes = _figure(len(groups))
    for ax, (name, lines) in zip(axes, groups.items(), strict=True):
        for label, series in lines:
            t0 = series[0][0]
            ax.plot([t - t0 for t, _ in series], [w for _, w in series], marker=".", markersize=3, linewidth=1,
                    label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("seconds since the first sample", fontsize=8)
        ax.set_ylabel("W", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        if len(lines) <= _LEGEND_MAX:
            ax.legend(fontsize=6)
    return _png(fig)
