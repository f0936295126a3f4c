"""CLI commands, one module per area; registered in milabox/cli.py (which alone turns errors into exit codes)."""

from __future__ import annotations

import click


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--env KEY=VALUE`` options as a dict.

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
