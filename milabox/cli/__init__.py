"""The command line (click only): the one place that turns errors into messages and exit codes."""

from milabox.cli.main import cli, main

__all__ = ["cli", "main"]
