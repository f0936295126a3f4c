"""CLI commands, one module per area; registered in milabox/cli.py (which alone turns errors into exit codes)."""
