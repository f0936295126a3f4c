#!/usr/bin/env python3
"""``make perf``: measure milabox itself and print three figures beside their goals.

1. Container overhead: matmul-fp32 and bert-fp32 (smoke) natively with the host's Python and torch and in
   their containers, same MILABOX_CONFIG, same thread count, alternating native/container several times;
   the ratio of the median rates container/native (goal >= 0.98).
2. Orchestration overhead per attempt (create, start, stop, remove, collect): an attempt's wall time minus
   the benchmark's own process time (its ``start`` to ``end`` events), median over the container attempts
   of (1) (goal <= 2 s).
3. ``milabox report`` over 100 synthetic runs x 20 benchmarks generated in a temporary folder: wall time of
   the command, interpreter start included, median of 3 (goal <= 2 s).

Figures, not a pass/fail test: the exit code is 0 whatever they are (1 only if a measurement failed).
Needs the CPU images (``make images``) and, for bert natively, transformers in the host venv (the Makefile
installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.errors import MilaboxError
from milabox.rundir.read import load_run, read_events

PROJECT = Path(__file__).resolve().parent.parent

CONTAINER_GOAL = 0.98
ORCHESTRATION_GOAL_S = 2.0
REPORT_GOAL_S = 2.0


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# --------------------------------------------------------------------------------------------
# 1 and 2: native vs container, orchestration


def _native(bench, threads: int, folder: Path) -> tuple[float, dict]:
    """Run the benchmark's main.py with the host venv's Python, as the container would; (rate, meta)."""
    folder.mkdir(parents=True)
    env = {**os.environ, "MILABOX_CONFIG": json.dumps(bench.config("smoke"), sort_keys=True),
           "MILABOX_RESULTS": str(folder), "MILABOX_BENCHMARK": bench.name, "OMP_NUM_THREADS": str(threads)}
    main = PROJECT / "milabox" / "suite" / bench.group / "main.py"
    proc = subprocess.run([sys.executable, str(main)], env=env, cwd=main.parent, capture_output=True, text=True,
                          timeout=600, check=False)
    events, _ = read_events(folder / "events.jsonl")
    summary = next((e for e in reversed(events) if e.kind == "summary"), None)
    if proc.returncode != 0 or summary is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"native {bench.name} failed (exit {proc.returncode}): {tail[0]}")
    meta = next((e.data for e in events if e.kind == "meta"), {})
    return float(summary.data["rate"]), meta


def _container(engine, vendor, bench, threads: int, folder: Path) -> tuple[float, dict, float]:
    """Run the benchmark through milabox; (rate, meta, orchestration overhead in s)."""
    from milabox.execution.local import run
    from milabox.execution.plan import RunOptions

    run(engine, [bench], vendor, RunOptions(size="smoke", run_dir=folder, environment={"OMP_NUM_THREADS":
                                                                                        str(threads)}))
    (attempt,) = load_run(folder).attempts
    if not attempt.record.ok or attempt.rate is None:
        raise RuntimeError(f"container {bench.name} failed: {attempt.record.cause}")
    span = attempt.process_span
    overhead = attempt.record.wall_s - (span[1] - span[0]) if span and attempt.record.wall_s else float("nan")
    return attempt.rate, attempt.meta, overhead


def measure_containers(names: list[str], rounds: int, work: Path) -> bool:
    import torch

    from milabox.definitions.vendors import get_vendor
    from milabox.engine.docker import Engine

    engine, vendor = Engine(), get_vendor("cpu")
    threads = os.cpu_count() or 1
    print(f"1. Container overhead: rate in the container / rate natively, median of {rounds} alternating rounds, "
          f"OMP_NUM_THREADS={threads} (goal >= {CONTAINER_GOAL})")
    overheads: dict[str, list[float]] = {}
    ok = True
    for bench in select(names, all_benchmarks()):
        native, contained, seen = [], [], {}
        for i in range(rounds):
            # Alternate which goes first, so a slow drift of the machine hits both sides alike.
            order = ("native", "container") if i % 2 == 0 else ("container", "native")
            for side in order:
                if side == "native":
                    rate, meta = _native(bench, threads, work / f"{bench.name}-native-{i}")
                    native.append(rate)
                else:
                    rate, meta, overhead = _container(engine, vendor, bench, threads, work / f"{bench.name}-box-{i}")
                    contained.append(rate)
                    overheads.setdefault(bench.name, []).append(overhead)
                seen[side] = meta
        ratio = statistics.median(contained) / statistics.median(native)
        ok &= ratio >= CONTAINER_GOAL
        same = "same torch and threads" if (seen["native"].get("torch"), seen["native"].get("threads")) == (
            seen["container"].get("torch"), seen["container"].get("threads")) else (
            f"DIFFERENT setups: native torch {seen['native'].get('torch')} threads {seen['native'].get('threads')}, "
            f"container torch {seen['container'].get('torch')} threads {seen['container'].get('threads')}")
        print(f"   {bench.name:<12} native {statistics.median(native):.4g} {bench.unit}  container "
              f"{statistics.median(contained):.4g} {bench.unit}  ratio {ratio:.3f}  {_verdict(ratio >= CONTAINER_GOAL)}"
              f"  ({same}; host torch {torch.__version__})")

    print(f"2. Orchestration overhead per attempt: wall time minus the benchmark's own process time, median of "
          f"the attempts above (goal <= {ORCHESTRATION_GOAL_S:g} s)")
    for name, values in overheads.items():
        med = statistics.median(values)
        print(f"   {name:<12} {med:.2f} s (min {min(values):.2f}, max {max(values):.2f}, {len(values)} attempts)  "
              f"{_verdict(med <= ORCHESTRATION_GOAL_S)}")
    return ok


# --------------------------------------------------------------------------------------------
# 3: report over many runs


def make_synthetic_runs(root: Path, runs: int = 100, benchmarks: int = 20, steps: int = 30,
                        telemetry: int = 30, seed: int = 0) -> list[Path]:
    """Write ``runs`` run folders of ``benchmarks`` benchmarks (one attempt each) in the documented layout,
    with ``steps`` rate and loss events and ``telemetry`` power samples an attempt.

    Returns:
        The run folders.
    """
    rng = random.Random(seed)
    names = [f"bench{i:02d}-fp32" for i in range(benchmarks)]
    folders = []
    t0 = 1_700_000_000.0
    for r in range(runs):
        run = root / f"run{r:03d}"
        run.mkdir(parents=True)
        manifest = {"format": 1, "milabox_version": "0.1.0", "source_commit": "synthetic", "host": "perf",
                    "vendor": "cpu", "size": "smoke", "command": ["milabox", "run"], "benchmarks": names,
                    "repeat": 1, "devices": ["all"], "images": {}, "started": "2026-11-24T10:00:00+00:00",
                    "ended": "2026-11-24T11:00:00+00:00", "status": "complete"}
        (run / "manifest.json").write_text(json.dumps(manifest))
        for b, name in enumerate(names):
            folder = run / name / "r0-dall"
            folder.mkdir(parents=True)
            base = 100.0 * (b + 1)
            start = t0 + r * 3600 + b * 60
            lines = [{"event": "start", "time": start, "benchmark": name, "size": "smoke", "pid": 1},
                     {"event": "meta", "time": start + 1, "torch": "2.13.0+cpu", "device": {"type": "cpu",
                      "name": "x86_64", "count": 1}, "python": "3.11", "hostname": "h", "threads": 2,
                      "precision": "fp32"}]
            rates = [base * rng.uniform(0.95, 1.05) for _ in range(steps)]
            for i, value in enumerate(rates):
                lines.append({"event": "rate", "time": start + 2 + i * 0.5, "step": i, "value": value,
                              "unit": "items/s"})
                lines.append({"event": "loss", "time": start + 2 + i * 0.5, "step": i, "value": 1 / (i + 1)})
            seconds = steps * 0.5
            lines += [{"event": "memory", "time": start + 3 + seconds, "peak_mb": 300.0},
                      {"event": "summary", "time": start + 3 + seconds, "rate": statistics.fmean(rates),
                       "unit": "items/s", "items": statistics.fmean(rates) * seconds, "seconds": seconds,
                       "steps": steps, "warmup": 3},
                      {"event": "end", "time": start + 4 + seconds, "status": "ok", "error": None}]
            (folder / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            energy = 0.0
            samples = []
            for i in range(telemetry):
                power = 150.0 + rng.uniform(-10, 10)
                energy += power
                samples.append({"time": start + i, "device": "cpu", "backend": "cpu", "power_w": power,
                                "energy_j": energy, "utilization_pct": 90.0})
            (folder / "telemetry.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
            config = {"benchmark": name, "size": "smoke", "precision": "fp32", "batch_size": 8, "steps": steps}
            record = {"format": 1, "benchmark": name, "group": name.split("-")[0], "repeat": 0, "device": "all",
                      "plan": "per_device", "unit": "items/s", "weight": 1.0, "size": "smoke",
                      "image": f"milabox/{name}:cpu-0.1.0", "image_id": "sha256:0", "status": "ok", "cause": None,
                      "rate": statistics.fmean(rates), "exit_code": 0, "timed_out": False, "oom_killed": False,
                      "wall_s": seconds + 6, "started": "2026-11-24T10:00:00+00:00",
                      "ended": "2026-11-24T10:00:30+00:00",
                      "container_request": {"image": f"milabox/{name}:cpu-0.1.0", "network_mode": "none",
                                            "environment": {"MILABOX_CONFIG": json.dumps(config),
                                                            "MILABOX_RESULTS": "/results", "HOME": "/tmp"}}}
            (folder / "record.json").write_text(json.dumps(record))
        folders.append(run)
    return folders


def measure_report(work: Path, repeats: int = 3) -> bool:
    folders = make_synthetic_runs(work / "synthetic")
    cmd = [sys.executable, "-m", "milabox", "report", *map(str, folders)]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"milabox report failed: {proc.stderr.strip()}")
    med = statistics.median(times)
    print(f"3. milabox report over {len(folders)} runs x 20 benchmarks (2000 attempts, events and telemetry): "
          f"{med:.2f} s, median of {repeats} (goal <= {REPORT_GOAL_S:g} s)  {_verdict(med <= REPORT_GOAL_S)}")
    return med <= REPORT_GOAL_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating native/container rounds (default 5)")
    parser.add_argument("--only", choices=["containers", "report"], help="measure only this")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="milabox-perf-"))
    # A telemetry library or counter that is missing here: one line, not a Python warning with its source.
    warnings.showwarning = lambda message, *rest, **kw: print(f"   note: {message}")
    try:
        print(f"milabox perf: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")
        if args.only in (None, "containers"):
            measure_containers(["matmul-fp32", "bert-fp32"], args.rounds, work)
        if args.only in (None, "report"):
            measure_report(work)
    except (RuntimeError, OSError, subprocess.SubprocessError, MilaboxError) as e:  # one line, as milabox does
        print(f"perf: measurement failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
