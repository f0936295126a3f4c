"""Exit codes of every command, in one module; main.py (the one place that maps errors) and the commands use them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# parse_env lives with the shared options now; imported here for the commands that still take it from here.
from milabox.cli.options import parse_env

__all__ = ["EXIT_ENGINE_LOST", "EXIT_ERROR", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_REGRESSION", "exit_for_run", "parse_env"]

# Exit codes of every command (the README's "Exit codes" table says the same to users).
EXIT_OK = 0  # done; for a run: every attempt passed
EXIT_FAILED = 1  # the run ended, but some benchmark attempts failed (their rows say why)
EXIT_ERROR = 2  # usage, input or set-up error: one line says what to fix (click's usage errors use 2 too)
EXIT_REGRESSION = 3  # compare --fail-on-regression found a regression
EXIT_ENGINE_LOST = 75  # the engine stopped answering mid-run (sysexits' EX_TEMPFAIL): `milabox run --resume DIR`
EXIT_INTERNAL = 70  # a bug in milabox (sysexits' EX_SOFTWARE); MILABOX_DEBUG=1 shows the traceback
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention)


def exit_for_run(folder: Path) -> None:
    """End the command with the run folder's exit code: engine lost, interrupted, some failed, or all passed.

    Args:
        folder: a finished run folder.

    Raises:
        SystemExit: ``EXIT_ENGINE_LOST``, ``EXIT_INTERRUPTED`` or ``EXIT_FAILED``; nothing when every attempt
            passed (an attempt superseded by its retry counts as its retry).
    """
    from milabox.rundir.layout import MANIFEST_NAME
    from milabox.rundir.read import load_run
    status = json.loads((folder / MANIFEST_NAME).read_text()).get("status")
    if status == "engine-lost":
        sys.exit(EXIT_ENGINE_LOST)
    if status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if any(a.record.status != "ok" and not a.record.raw.get("superseded_by") for a in load_run(folder).attempts):
        sys.exit(EXIT_FAILED)


def vendor_named(name: str):
    """The vendor a ``--vendor`` value names (platform or maker).

    Raises:
        UnknownVendor: no vendor has that name (the message lists them).
    """
    from milabox.definitions.vendors import get_vendor
    return get_vendor(name)


def selected(names: tuple[str, ...], suite: str | None = None, exclude: tuple[str, ...] = ()):
    """The benchmarks a command's arguments select (names, groups, families, tags; ``--suite``, ``--exclude``).

    Raises:
        UnknownBenchmark: a name matches nothing (the message suggests close names).
    """
    from milabox.definitions.benchmarks import all_benchmarks, select
    return select(list(names), all_benchmarks(), suite, list(exclude))
