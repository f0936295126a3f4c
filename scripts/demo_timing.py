"""The timing table `make demo` prints at its end: where the minutes went, phase by phase.

Reads the phases the Makefile recorded (``name start end``, epoch seconds, one line each) and splits the build
phase into the runtime image and the benchmark images with the build's own ``built <tag> ... in <s>s`` lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BUILT = re.compile(r"built (\S+) \S+ in ([0-9.]+)s")


def phases(phase_file: Path, build_log: Path) -> list[tuple[str, float, float]]:
    """(name, start, end) of every phase, in order, with ``build`` split in two where the log allows."""
    runtime_s = next((float(m[2]) for line in _lines(build_log) if (m := BUILT.search(line)) and "/runtime:" in m[1]),
                     None)
    spans: dict[str, tuple[float, float]] = {}
    for line in _lines(phase_file):
        parts = line.split()
        if len(parts) != 3:
            continue
        name, start, end = parts[0], float(parts[1]), float(parts[2])
        if name in spans:  # a target make reached twice (the second time a no-op): one span
            start, end = min(start, spans[name][0]), max(end, spans[name][1])
        spans[name] = (start, end)
    rows = []
    for name, (start, end) in spans.items():
        if name == "build" and runtime_s is not None:
            rows += [("runtime image", start, start + runtime_s), ("benchmark images", start + runtime_s, end)]
        else:
            rows.append((name, start, end))
    return sorted(rows, key=lambda r: r[1])


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def table(rows: list[tuple[str, float, float]]) -> str:
    """The table: each phase's start and end from the first phase's start, and its duration, then the total."""
    if not rows:
        return "no demo phases recorded"
    t0 = rows[0][1]
    out = [f"{'phase':<18}{'start s':>9}{'end s':>9}{'took s':>9}"]
    out += [f"{name:<18}{start - t0:>9.1f}{end - t0:>9.1f}{end - start:>9.1f}" for name, start, end in rows]
    out.append(f"{'total':<18}{'':>9}{max(end for _, _, end in rows) - t0:>9.1f}")
    return "\n".join(out)


if __name__ == "__main__":
    print("\n" + table(phases(Path(sys.argv[1]), Path(sys.argv[2]))))
