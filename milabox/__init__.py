"""milabox: a benchmark suite for AI accelerators, one container per benchmark."""

__version__ = "0.1.0"
