#!/usr/bin/env python3
"""``make perf``: measure milabox itself and print three figures beside their goals.

1. Container overhead: matmul-fp32 and bert-fp32 through ``milabox run`` in their containers and with
   ``--runtime native`` (the same benchmark code and runtime, the host venv's Python and torch), same size,
   ``--set``, thread count and ``--min-seconds`` (at least 10 s measured a side), in interleaved rounds
   (container, native, container, native...). Each round gives one ratio container/native; printed: their
   median and the 95 % t interval of their mean, as ``ratio X`` (goal >= 0.99). A ratio above 1.02 (the
   container faster than the same code natively, which nothing in a container can cause) or below 0.9 says the
   machine was too noisy to measure: "measurement unreliable", never "ok".
2. Orchestration overhead per attempt (create, start, stop, remove, collect): a container attempt's wall time
   (its record's ``wall_s``) minus the benchmark process's own time (its ``start`` to ``end`` events), median
   over the container attempts of (1) (goal <= 1 s); the native attempts' same figure beside it.
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

from milabox.errors import MilaboxError
from milabox.rundir.model import AttemptResult
from milabox.rundir.read import load_run
from milabox.stats import CONFIDENCE, describe

PROJECT = Path(__file__).resolve().parent.parent

CONTAINER_GOAL = 0.99
#: Container/native outside this range is the machine's noise, not milabox: the container cannot be faster than
#: the same code natively (1.02 leaves room for run-to-run noise), and 10 % slower is no container's cost on a CPU.
RELIABLE_RATIO = (0.9, 1.02)
ORCHESTRATION_GOAL_S = 1.0
REPORT_GOAL_S = 2.0
#: Measured seconds each side of a round reaches at least (``--min-seconds``), so that a round is not smoke noise.
MIN_SECONDS = 10.0
#: The benchmarks of (1) and their ``--set`` sizing: matmul's smoke n=512 steps are milliseconds, n=1024 ones a
#: tenth of a second on a 2-core CPU, long enough for the clock and the event writes to be noise.
WORKLOADS: dict[str, tuple[str, ...]] = {"matmul-fp32": ("n=1024",), "bert-fp32": ()}


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def container_verdict(ratio: float) -> str:
    """What a container/native ratio says.

    Args:
        ratio: the median per-round ratio.

    Returns:
        "ok", "MISSED" (below ``CONTAINER_GOAL``) or "measurement unreliable ..." (outside ``RELIABLE_RATIO``).
    """
    low, high = RELIABLE_RATIO
    if not low <= ratio <= high:
        return f"measurement unreliable (outside {low:g}-{high:g}: the machine was busy; rerun on a quiet one)"
    return _verdict(ratio >= CONTAINER_GOAL)


# --------------------------------------------------------------------------------------------
# 1 and 2: native vs container, orchestration


def milabox_run(name: str, runtime: str, folder: Path, threads: int, settings: tuple[str, ...],
                min_seconds: float) -> AttemptResult:
    """``milabox run NAME --runtime RUNTIME`` at smoke size into ``folder``.

    Args:
        name: the benchmark.
        runtime: ``docker`` or ``native``.
        folder: the new run folder.
        threads: ``OMP_NUM_THREADS`` for the benchmark.
        settings: ``--set`` values.
        min_seconds: ``--min-seconds``.

    Returns:
        The run's one attempt, which succeeded.

    Raises:
        RuntimeError: the command failed, or its attempt did not measure a rate for ``min_seconds``.
    """
    cmd = [sys.executable, "-m", "milabox", "run", name, "--vendor", "cpu", "--size", "smoke", "--runtime", runtime,
           "--min-seconds", f"{min_seconds:g}", "--run-dir", str(folder), "--env", f"OMP_NUM_THREADS={threads}",
           *(arg for s in settings for arg in ("--set", s))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROJECT, timeout=1200)
    attempts = load_run(folder).attempts if folder.exists() else []
    if proc.returncode != 0 or len(attempts) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        cause = attempts[0].record.cause if len(attempts) == 1 else None
        raise RuntimeError(f"milabox run {name} --runtime {runtime} failed (exit {proc.returncode}): {cause or tail[0]}")
    (attempt,) = attempts
    seconds = attempt.summary.data.get("seconds", 0) if attempt.summary else 0
    if not attempt.record.ok or attempt.rate is None or seconds < min_seconds:
        raise RuntimeError(f"{runtime} {name}: no rate over {min_seconds:g} s ({attempt.record.cause or seconds})")
    return attempt


def orchestration_s(attempt: AttemptResult) -> float:
    """What milabox and the engine add to an attempt: its wall time minus its benchmark process's whole life.

    The process's life runs from when it began (``process_started``: before its interpreter and imports, which
    the native runtime pays alike) to its ``end`` event; a runtime that cannot tell falls back to the ``start``
    event, so that the figure then also holds the benchmark's start-up.

    Args:
        attempt: a finished attempt.

    Returns:
        Its record's ``wall_s`` minus that life, in s; NaN when either is missing.
    """
    span, wall = attempt.process_span, attempt.record.wall_s
    if not span or not wall:
        return float("nan")
    began = attempt.process_started if attempt.process_started is not None else span[0]
    return wall - (span[1] - began)


def startup_s(attempt: AttemptResult) -> float:
    """The benchmark's own start-up: from its process's beginning to its ``start`` event (interpreter, imports).

    Returns:
        Seconds; NaN when the runtime could not tell when its process began.
    """
    span, began = attempt.process_span, attempt.process_started
    return span[0] - began if span and began is not None else float("nan")


def _setup(attempt: AttemptResult) -> tuple:
    # The interpreter too: a Python-bound workload (a small model's many small ops) runs at the speed of the
    # interpreter's build, which differs between the image's Debian python3 and a host's own (pyenv, conda).
    return attempt.meta.get("torch"), attempt.meta.get("threads"), attempt.meta.get("python")


def measure_containers(rounds: int, min_seconds: float, work: Path) -> None:
    """Print figures (1) and (2), measured with run folders under ``work``.

    Raises:
        RuntimeError: a ``milabox run`` failed.
    """
    import torch

    threads = os.cpu_count() or 1
    print(f"1. Container overhead: rate in the container / rate natively (--runtime native), {rounds} interleaved "
          f"rounds (container, native, ...), >= {min_seconds:g} s measured a side, OMP_NUM_THREADS={threads}; "
          f"median of the per-round ratios and the {CONFIDENCE:.0%} t interval of their mean "
          f"(goal >= {CONTAINER_GOAL}; outside {RELIABLE_RATIO[0]:g}-{RELIABLE_RATIO[1]:g}: unreliable)")
    overheads: dict[str, dict[str, list[float]]] = {}
    for name, settings in WORKLOADS.items():
        ratios, sides = [], {}
        for i in range(rounds):
            for runtime in ("docker", "native"):
                attempt = milabox_run(name, runtime, work / f"{name}-{runtime}-{i}", threads, settings, min_seconds)
                sides[runtime] = attempt
                overheads.setdefault(name, {}).setdefault(runtime, []).append(orchestration_s(attempt))
                overheads[name].setdefault(f"{runtime} start-up", []).append(startup_s(attempt))
            box, native = sides["docker"], sides["native"]
            ratios.append(box.rate / native.rate)
            print(f"   {name:<12} round {i + 1}: container {box.rate:.4g} native {native.rate:.4g} "
                  f"{box.record.unit} (measured {box.summary.data['seconds']:.1f} s / "
                  f"{native.summary.data['seconds']:.1f} s)  {ratios[-1]:.3f}")
        st = describe(ratios)
        ci = f"{st.ci_low:.3f}-{st.ci_high:.3f}" if st.ci_low is not None else "n/a"
        same = "same torch, threads and Python" if _setup(sides["docker"]) == _setup(sides["native"]) else (
            "DIFFERENT setups: container torch {} threads {} Python {}, native torch {} threads {} Python {}".format(
                *_setup(sides["docker"]), *_setup(sides["native"])))
        print(f"   {name:<12} ratio {st.median:.3f} (median of {len(ratios)} rounds; {CONFIDENCE:.0%} CI {ci})  "
              f"goal >= {CONTAINER_GOAL}  {container_verdict(st.median)}  ({same}; host torch {torch.__version__})")

    print(f"2. Orchestration overhead per attempt: wall time minus the benchmark process's life (from its beginning, "
          f"before its interpreter and imports, to its end event), median of the attempts above "
          f"(goal <= {ORCHESTRATION_GOAL_S:g} s); the benchmark's own start-up (interpreter, imports) beside it")
    for name, by_runtime in overheads.items():
        box, native = by_runtime["docker"], by_runtime["native"]
        med = statistics.median(box)
        print(f"   {name:<12} container {med:.2f} s (min {min(box):.2f}, max {max(box):.2f}, {len(box)} attempts)  "
              f"goal <= {ORCHESTRATION_GOAL_S:g} s  {_verdict(med <= ORCHESTRATION_GOAL_S)}  "
              f"(native: {statistics.median(native):.2f} s; start-up: container "
              f"{statistics.median(by_runtime['docker start-up']):.2f} s, native "
              f"{statistics.median(by_runtime['native start-up']):.2f} s)")


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
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved container/native rounds, at least 5 (default 5)")
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                        help=f"measured seconds a side and round, at least {MIN_SECONDS:g} (default {MIN_SECONDS:g})")
    parser.add_argument("--only", choices=["containers", "report"], help="measure only this (default: all)")
    args = parser.parse_args()
    if args.rounds < 5 or args.min_seconds < MIN_SECONDS:
        parser.error(f"--rounds {args.rounds} --min-seconds {args.min_seconds:g}: fewer than 5 rounds or "
                     f"{MIN_SECONDS:g} s a side measure noise, not milabox")
    work = Path(tempfile.mkdtemp(prefix="milabox-perf-"))
    # A telemetry library or counter that is missing here: one line, not a Python warning with its source.
    warnings.showwarning = lambda message, *rest, **kw: print(f"   note: {message}")
    try:
        print(f"milabox perf: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")
        if args.only in (None, "containers"):
            measure_containers(args.rounds, args.min_seconds, work)
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
