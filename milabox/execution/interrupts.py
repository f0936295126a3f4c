"""Ctrl-C and SIGTERM as one orderly stop of a run, whatever signal dispositions the process inherited.

Why not Python's default: a process started in the background of a non-interactive shell (``cmd &`` in a
script, some CI runners) inherits SIGINT as *ignored*, and Python then never raises KeyboardInterrupt, so a
user's Ctrl-C (or a CI's SIGINT) would be lost while a hung benchmark runs. SIGTERM (``scancel``, ``docker
stop``, a CI timeout) would kill the process outright and leave its container behind.

:class:`StopRequest` installs handlers for both. The first signal is recorded; it raises KeyboardInterrupt only
inside an :meth:`StopRequest.interruptible` section (the long waits: a container running, a Slurm queue), so it
never lands in the middle of creating or removing a container or writing a record. Later signals only say that
milabox is stopping: cleanup is bounded by the engine's timeouts, and records are written atomically.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED_EXIT_CODE = 130  # the shell's convention for "ended by SIGINT"

_active: StopRequest | None = None


def ensure_ctrl_c() -> None:
    """Make Ctrl-C raise KeyboardInterrupt even when the process inherited SIGINT as ignored (for every command)."""
    if _main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class StopRequest:
    """The stop a user asked for with Ctrl-C or SIGTERM, for the duration of a ``with`` block.

    Outside the main thread (where Python cannot handle signals) it installs nothing and is never requested.

    Attributes:
        requested: a stop signal arrived.
        signals: how many stop signals arrived (a second one means "stop waiting" where waiting is optional).
    """

    def __init__(self) -> None:
        self.requested = False
        self.signals = 0
        self._armed = False
        self._previous: dict[int, object] = {}
        self._outer: StopRequest | None = None

    def __enter__(self) -> StopRequest:  # noqa: PYI034 (not subclassed)
        global _active
        if not _main_thread():
            return self
        self._outer, _active = _active, self
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()
        if _active is self:
            _active = self._outer

    def _handle(self, signum: int, frame: object) -> None:
        self.signals += 1
        if self.requested:
            _say("milabox: already stopping: cleaning up and writing what was collected; please wait")
            return
        self.requested = True
        if self._armed:
            self._armed = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A section that the first stop signal ends with KeyboardInterrupt (raised at once if one came already)."""
        if self.requested:
            raise KeyboardInterrupt
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


def interruptible() -> contextlib.AbstractContextManager[None]:
    """The active :class:`StopRequest`'s interruptible section; with none active, Python's own KeyboardInterrupt."""
    return _active.interruptible() if _active is not None else contextlib.nullcontext()


def stop_requested() -> bool:
    """Whether the active :class:`StopRequest` (if any) has received a stop signal."""
    return _active is not None and _active.requested


def current() -> StopRequest | None:
    """The active :class:`StopRequest`, or None."""
    return _active


def _say(line: str) -> None:
    # os.write, not print: a handler that prints while the main thread is inside a print to the same
    # buffered stream raises "reentrant call".
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def scope() -> contextlib.AbstractContextManager[StopRequest]:
    """The active :class:`StopRequest` if there is one, else a new one for the duration of the ``with`` block."""
    return contextlib.nullcontext(_active) if _active is not None else StopRequest()
