"""What a person watching the terminal sees: build and run progress. Only the CLI uses this module."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

from milabox.images.build import BuildResult


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


class BuildDisplay:
    """Live build progress: a bar of Dockerfile steps with the current instruction; one line per step off a TTY."""

    def __init__(self, verbose: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.verbose = verbose
        self.started = time.monotonic()

    def _out(self, text: str, transient: bool = False) -> None:
        if self.tty and transient:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\033[K" + text[:width])
        else:
            self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def begin(self, image: str, log_path: Path) -> None:
        self.started = time.monotonic()
        self._out(f"building {image} (log: {log_path})")

    def step(self, image: str, step: int, steps: int, instruction: str) -> None:
        done = int(20 * (step - 1) / max(steps, 1))
        bar = "#" * done + "-" * (20 - done)
        elapsed = _fmt_s(time.monotonic() - self.started)
        self._out(f"  [{bar}] step {step}/{steps} {elapsed} {instruction}", transient=True)

    def line(self, image: str, text: str) -> None:
        if self.verbose:
            self._out("    " + text)

    def end(self, result: BuildResult) -> None:
        cached = f", {result.cached_steps}/{result.steps} steps cached" if result.steps else ""
        self._out(f"  built {result.tag} {result.image_id[7:19]} in {result.seconds:.1f}s{cached}")


def echo(text: str = "") -> None:
    """Print a line on standard output."""
    click.echo(text)


def note(text: str) -> None:
    """Print a progress or warning line on standard error (keeps standard output for results)."""
    click.echo(text, err=True)


class RunDisplay:
    """Progress of a run, one line as each attempt starts and ends: which benchmark, which repeat of how many,
    time elapsed and an estimate of the time left (from the attempts already done, the same benchmark's first).

    Lines, not a live clock: the host stays idle while a container runs.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.pending: list = []  # planned attempts not started yet
        self.repeats: dict[str, int] = {}  # benchmark -> repeats planned
        self.walls: dict[str, list[float]] = {}  # benchmark -> wall seconds of its finished attempts
        self.attempt_started_at = self.started

    def planned(self, attempts) -> None:
        """Receive the run's planned attempts (for repeat counts and the time estimate)."""
        self.pending = list(attempts)
        for a in attempts:
            self.repeats[a.benchmark.name] = max(self.repeats.get(a.benchmark.name, 0), a.repeat + 1)

    def estimate_left(self, attempts) -> float | None:
        """Seconds ``attempts`` should take: each at its benchmark's mean so far, else the mean of all so far.

        Returns:
            None until an attempt has finished.
        """
        every = [w for walls in self.walls.values() for w in walls]
        if not every:
            return None
        overall = sum(every) / len(every)
        total = 0.0
        for a in attempts:
            own = self.walls.get(a.benchmark.name)
            total += sum(own) / len(own) if own else overall
        return total

    def _where(self, attempt) -> str:
        repeats = self.repeats.get(attempt.benchmark.name, attempt.repeat + 1)
        device = f", device {attempt.device_label}" if attempt.devices else ""
        return f"{attempt.benchmark.name} repeat {attempt.repeat + 1}/{repeats}{device}"

    def attempt_started(self, index: int, total: int, attempt) -> None:
        now = self.clock()
        self.attempt_started_at = now
        self.pending = [a for a in self.pending if a != attempt]
        left = self.estimate_left([attempt, *self.pending])
        eta = "estimating time left" if left is None else f"about {_fmt_s(left)} left"
        note(f"[{index}/{total}] {self._where(attempt)}: running ({_fmt_s(now - self.started)} elapsed, {eta})")

    def attempt_ended(self, index: int, total: int, attempt, record: dict) -> None:
        now = self.clock()
        wall = record.get("wall_s")
        self.walls.setdefault(attempt.benchmark.name, []).append(
            float(wall) if isinstance(wall, (int, float)) else now - self.attempt_started_at)
        status = record.get("status")
        if status == "ok":
            rate = record.get("rate")
            detail = f"ok in {record.get('wall_s', 0):.1f}s" + (f", {rate:.4g} {record.get('unit')}" if rate else "")
        else:
            detail = f"{status}: {record.get('cause') or ''}".rstrip(": ")
        note(f"[{index}/{total}] {self._where(attempt)}: {detail}")

    def repeats_skipped(self, benchmark, repeats: int, sem_pct: float, skipped: int) -> None:
        """A benchmark's sem% went below --until-sem: its remaining attempts will not run."""
        self.pending = [a for a in self.pending if a.benchmark.name != benchmark.name]
        note(f"{benchmark.name}: sem {sem_pct:.2g}% after {repeats} repeat(s) is below --until-sem; "
             f"{skipped} attempt(s) skipped")

    def repeats_chosen(self, benchmark, cv_pct: float | None, repeats: int | None) -> None:
        """``--repeat auto`` judged the first repeats: how many it runs, or a warning that the figure is noise."""
        if repeats is None:
            why = f"run-to-run CV {cv_pct:.3g}%" if cv_pct is not None else "too few successful repeats"
            note(f"milabox: warning: {benchmark.name}: {why}; this figure cannot be trusted")
        else:
            note(f"{benchmark.name}: run-to-run CV {cv_pct:.3g}%: {repeats} repeats (--repeat auto)")

    def unstable(self, benchmark, repeat: int, retried: bool) -> None:
        """An attempt of ``repeat`` had a transient slow phase (``--until-stable``)."""
        then = "repeating it" if retried else "no repeat left (--repeat)"
        note(f"{benchmark.name} repeat {repeat + 1}: a transient slow phase in its step rates; {then}")

    def skipped(self, benchmark, why: str) -> None:
        note(f"skipping {benchmark.name}: {why}")
