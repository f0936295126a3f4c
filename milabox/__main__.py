"""`python -m milabox` is the `milabox` command."""

from .cli import main

main()
