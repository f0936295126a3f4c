"""How much CPU the telemetry sampler costs: CPU seconds of its thread per wall second (goal: < 1% of a core at 1 s).

Usage: python scripts/telemetry_cost.py [--seconds 20] [--interval 1] [--backend psutil|nvml|amdsmi|xpu-smi]

Runs a real Sampler (the vendor backend plus the host CPU, as `milabox run` does) into a temporary file
for the given time and prints the sampling thread's CPU time (time.thread_time, measured inside the
thread) divided by the wall time, as a percentage of one core and as a ratio to the 1% goal.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from milabox.execution.telemetry import Telemetry
from milabox.rundir.layout import TELEMETRY_NAME

GOAL_PCT = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to sample (default 20)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    parser.add_argument("--backend", default="psutil", help="vendor backend (default psutil: the CPU only)")
    args = parser.parse_args()
    telemetry = Telemetry.open(args.backend, on_warning=lambda m: print(f"warning: {m}"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / TELEMETRY_NAME
        sampler = telemetry.sampler(path, args.interval)
        start = time.monotonic()
        with sampler:
            time.sleep(args.seconds)
        wall = time.monotonic() - start
        lines = len(path.read_text().splitlines()) if path.exists() else 0
    telemetry.close()
    pct = 100 * sampler.cpu_seconds / wall
    print(f"backends: {', '.join(b.name for b in sampler.backends) or 'none'}")
    print(f"sampled {sampler.samples} times ({lines} lines) in {wall:.1f} s at {args.interval:g} s")
    print(f"sampler thread CPU: {sampler.cpu_seconds * 1000:.1f} ms = {pct:.3f}% of one core "
          f"(goal < {GOAL_PCT:g}%: ratio to goal {pct / GOAL_PCT:.3f})")


if __name__ == "__main__":
    main()
