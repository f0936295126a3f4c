"""What a person watching the terminal sees: build and run progress. Only the CLI uses this module."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

from .build import BuildResult


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
    """One line as each attempt starts and ends, with elapsed time for the whole run."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def attempt_started(self, index: int, total: int, attempt) -> None:
        elapsed = _fmt_s(time.monotonic() - self.started)
        note(f"[{index}/{total}] {attempt.folder} running ({elapsed} elapsed)")

    def attempt_ended(self, index: int, total: int, attempt, record: dict) -> None:
        status = record.get("status")
        if status == "ok":
            rate = record.get("rate")
            detail = f"ok in {record.get('wall_s', 0):.1f}s" + (f", {rate:.4g} {record.get('unit')}" if rate else "")
        else:
            detail = f"{status}: {record.get('cause') or ''}".rstrip(": ")
        note(f"[{index}/{total}] {attempt.folder} {detail}")

    def skipped(self, benchmark, why: str) -> None:
        note(f"skipping {benchmark.name}: {why}")
