"""Exceptions that make a benchmark fail (the process then exits non-zero)."""


class BenchmarkFailure(Exception):
    """Base class: the benchmark ran but its measurement is not valid."""


class NonFiniteLoss(BenchmarkFailure):
    """A reported loss was NaN or infinite: the training diverged, so its rate means nothing."""


class NoRate(BenchmarkFailure):
    """The run ended without completing a single measured step."""


class Terminated(BaseException):
    """SIGTERM arrived (``docker stop`` or a host timeout); raised by :func:`milabox_runtime.main`.

    A BaseException, like KeyboardInterrupt, so that benchmark code catching ``Exception`` lets it
    through and the ``end`` event still gets written.
    """
