"""``python -m milabox_runtime``: a benchmark image's entrypoint (see :mod:`milabox_runtime.cli`)."""

from .cli import main

raise SystemExit(main())
