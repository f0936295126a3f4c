"""`python -m milabox` is the `milabox` command."""

from milabox.cli.main import main

main()
