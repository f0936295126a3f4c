#!/usr/bin/env python3
"""``make stability``: how far two identical runs differ, and how often a slow phase is caught.

1. The same ``milabox run matmul-fp32 --set n=1024 --min-seconds 10 --repeat 3`` twice, one after the other: the
   difference of the two runs' perf (the report's figure, mean of their attempts) as ``difference: X %``
   (goal <= 2 % on a quiet machine).
2. Slow-phase detection: a few single attempts of the same command (one matmul a step) in which a slow phase is
   planted (one busy process a CPU core, started a few seconds into the measured steps and stopped a few seconds
   later), interleaved with as many left alone: how many records carry ``unstable`` (written by
   milabox.execution.attempt when milabox.stats.slow_phase finds a phase in the step rates), as
   "slow phase flagged in K of N planted runs, in J of M clean runs".

Figures, not a pass/fail test: the exit code is 0 whatever they are (1 only if a measurement failed).
Needs the CPU matmul image (``make images``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from milabox.errors import MilaboxError
from milabox.reporting.summary import summarize
from milabox.rundir.layout import EVENTS_NAME
from milabox.rundir.read import load_run

PROJECT = Path(__file__).resolve().parent.parent

DIFFERENCE_GOAL_PCT = 2.0
COMMAND = ("matmul-fp32", "--vendor", "cpu", "--set", "n=1024", "--min-seconds", "10")
#: The planted slow phase: it starts this many seconds after the first measured step and lasts this long, well
#: inside the 10 s measured, and long enough for many more slow steps than milabox.stats.SLOW_MIN_STEPS.
HOG_AFTER_S = 3.0
HOG_FOR_S = 3.0
#: Slow-phase attempts time one matmul a step: four times the steps of (1)'s, so that even on a busy machine the
#: planted phase holds many more slow steps than milabox.stats.SLOW_MIN_STEPS. Clean attempts use the same.
PHASE_SETTINGS = ("--set", "repeat_per_step=1")
#: A process that keeps one core busy.
HOG = (sys.executable, "-c", "while True: pass")


def milabox_run(folder: Path, *extra: str) -> subprocess.Popen:
    """Start ``milabox run`` with :data:`COMMAND` into ``folder``.

    Args:
        folder: the new run folder.
        *extra: more options (``--repeat 3``, :data:`PHASE_SETTINGS`).

    Returns:
        The running command (its output goes to a log file in ``folder``'s parent).
    """
    with open(folder.parent / f"{folder.name}.log", "w") as log:  # the child has its own copy of the file
        return subprocess.Popen([sys.executable, "-m", "milabox", "run", *COMMAND, "--run-dir", str(folder), *extra],
                                cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)


def finished(proc: subprocess.Popen, folder: Path) -> list:
    """Wait for a ``milabox run`` and return its attempts.

    Args:
        proc: the command, from :func:`milabox_run`.
        folder: its run folder.

    Returns:
        The run's attempts (milabox.rundir.model.AttemptResult).

    Raises:
        RuntimeError: the command failed.
    """
    code = proc.wait()
    attempts = load_run(folder).attempts if folder.exists() else []
    causes = [f"{a.name}: {a.record.cause}" for a in attempts if not a.record.ok]
    if code != 0 or not attempts:
        tail = (folder.parent / f"{folder.name}.log").read_text().strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"milabox run {' '.join(COMMAND)} failed (exit {code}): {'; '.join(causes) or tail[0]}")
    return attempts


def _is_rate(line: str) -> bool:
    try:
        return json.loads(line).get("event") == "rate"
    except ValueError:  # a line still being written
        return False


def _measuring(folder: Path) -> bool:
    for events in folder.glob(f"**/{EVENTS_NAME}"):
        with open(events, encoding="utf-8", errors="replace") as f:
            if any(_is_rate(line) for line in f):
                return True
    return False


def planted_run(folder: Path, plant: bool = True) -> bool:
    """One attempt (:data:`PHASE_SETTINGS`) with a slow phase planted in its measured steps, or a clean one.

    Args:
        folder: the new run folder.
        plant: start the busy processes (default true); false: the same attempt, left alone.

    Returns:
        Whether the attempt's record says ``unstable``.

    Raises:
        RuntimeError: the command failed, or it ended before its measured steps began.
    """
    proc = milabox_run(folder, *PHASE_SETTINGS)
    try:
        while not _measuring(folder):
            if proc.poll() is not None:
                raise RuntimeError(f"milabox run ended before its measured steps began (exit {proc.returncode})")
            time.sleep(0.2)
        time.sleep(HOG_AFTER_S)
        hogs = [subprocess.Popen(HOG) for _ in range(os.cpu_count() or 1)] if plant else []
        try:
            time.sleep(HOG_FOR_S)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        (attempt,) = finished(proc, folder)
    except BaseException:
        if proc.poll() is None:  # milabox stops its container on SIGINT, as on Ctrl-C
            proc.send_signal(signal.SIGINT)
            proc.wait()
        raise
    if not attempt.record.ok:
        raise RuntimeError(f"planted attempt failed: {attempt.record.cause}")
    return "unstable" in attempt.record.raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted", type=int, default=3, help="attempts with a planted slow phase (default 3)")
    parser.add_argument("--clean", type=int, default=3, help="the same attempts with none planted (default 3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="milabox-stability-"))
    try:
        print(f"milabox stability: {os.cpu_count()} CPU cores; milabox run {' '.join(COMMAND)} --repeat 3, twice")
        perfs = []
        for i in range(2):
            folder = work / f"same-{i}"
            finished(milabox_run(folder, "--repeat", "3"), folder)
            (row,) = summarize(load_run(folder)).benchmarks
            if row.perf is None or row.fail:
                raise RuntimeError(f"run {i + 1}: {row.fail} of {row.n} attempts failed")
            perfs.append(row.perf)
            print(f"   run {i + 1}: perf {row.perf:.4g} {row.unit} (sem {row.sem_pct or 0:.1f} % over {row.n} attempts)")
        diff = 100 * abs(perfs[1] - perfs[0]) / perfs[0]
        print(f"   difference: {diff:.2f} %  (goal <= {DIFFERENCE_GOAL_PCT:g} % on a quiet machine)  "
              f"{'ok' if diff <= DIFFERENCE_GOAL_PCT else 'MISSED'}")
        print(f"   planting a slow phase: {os.cpu_count()} busy processes from {HOG_AFTER_S:g} s into the measured "
              f"steps, for {HOG_FOR_S:g} s, in {args.planted} attempts ({' '.join(PHASE_SETTINGS)}), "
              f"none in {args.clean} more")
        # Interleaved, so that the machine's own load falls on both kinds alike.
        flags: dict[bool, list[bool]] = {True: [], False: []}
        for i in range(max(args.planted, args.clean)):
            for plant, count in ((True, args.planted), (False, args.clean)):
                if i < count:
                    flags[plant].append(planted_run(work / f"{'planted' if plant else 'clean'}-{i}", plant))
        print(f"   slow phase flagged in {sum(flags[True])} of {args.planted} planted runs, "
              f"in {sum(flags[False])} of {args.clean} clean runs")
    except (RuntimeError, OSError, subprocess.SubprocessError, MilaboxError) as e:  # one line, as milabox does
        print(f"stability: measurement failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
