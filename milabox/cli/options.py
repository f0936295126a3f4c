"""Options that several commands share, defined once: each is a decorator (click's ``@click.option`` style)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from milabox.reporting.formats import FORMATS as REPORT_FORMATS  # the formats of a report or comparison

VENDOR_HELP = "platform (cpu, cuda, rocm, xpu) or maker (nvidia, amd, intel)"
#: ``--format`` of the commands that print a report.
FORMATS = click.Choice(REPORT_FORMATS)


def vendor_option(command):
    """``--vendor NAME`` (default ``cpu``): the vendor a command builds, renders or runs for.

    Args:
        command: the click command (or its function) to decorate.

    Returns:
        The decorated command; its function gets ``vendor``, a name (resolved by the command itself).
    """
    return click.option("--vendor", default="cpu", show_default=True, help=VENDOR_HELP)(command)


def format_option(*choices: str, help_text: str | None = None):
    """``--format`` with the given choices, the first one the default.

    Args:
        choices: the formats (default: the report formats, ``REPORT_FORMATS``).
        help_text: the option's help line.

    Returns:
        A decorator; the command's function gets ``fmt``.
    """
    choices = choices or REPORT_FORMATS
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True,
                        help=help_text)


def selection_options(command):
    """``--suite`` and ``--exclude``, for the commands that take a benchmark selection.

    Args:
        command: the click command (or its function) to decorate.

    Returns:
        The decorated command; its function gets ``suite`` (``None``, ``standard`` or ``all``) and ``exclude``.
    """
    command = click.option("--exclude", multiple=True, help="leave out a benchmark, group, family or tag "
                           "(repeatable)")(command)
    return click.option("--suite", type=click.Choice(["standard", "all"]),
                        help="standard: the weighted set; all: every benchmark")(command)


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--env KEY=VALUE`` options as a dict.

    Args:
        pairs: the options' values, in order (a later key wins).

    Returns:
        The variables by name.

    Raises:
        click.BadParameter: a pair has no ``=`` or no key.
    """
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


def env_option(help_text: str = "KEY=VALUE set in every container (repeatable)"):
    """``--env KEY=VALUE`` (repeatable), parsed by :func:`parse_env`.

    Args:
        help_text: the option's help line.

    Returns:
        A decorator; the command's function gets ``env``, a dict (a malformed pair is a usage error, exit code 2).
    """
    return click.option("--env", "env", multiple=True, help=help_text,
                        callback=lambda _ctx, _param, value: parse_env(value))


def benchmarks_dir_option(command):
    """``--benchmarks-dir DIR`` (repeatable): folders of the user's own benchmark folders, for the top-level group.

    Args:
        command: the click group (or its function) to decorate.

    Returns:
        The decorated group; its function gets ``benchmarks_dirs``, a tuple of paths.
    """
    return click.option(
        "--benchmarks-dir", "benchmarks_dirs", multiple=True, metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="add DIR's benchmark folders (<name>/benchmark.toml + main.py) to the bundled suite, for every command "
             f"(repeatable); $MILABOX_BENCHMARKS, a '{os.pathsep}'-separated list of such folders, is read first; "
             "a folder name already in use is an error")(command)
