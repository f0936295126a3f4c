"""Append-only writer of ``events.jsonl`` (format in docs/results-format.md)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

EVENTS_NAME = "events.jsonl"


class EventWriter:
    """Writes one JSON object a line, flushed at once: the container may be killed at any moment."""

    def __init__(self, results_dir: str | os.PathLike[str]) -> None:
        """Open (append to) ``events.jsonl`` in ``results_dir``, creating the folder if needed.

        Args:
            results_dir: folder to write into.

        Raises:
            OSError: the folder or file cannot be created.
        """
        folder = Path(results_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / EVENTS_NAME
        # Append rather than truncate: never destroy what an earlier process wrote there.
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Write one event with ``event`` and ``time`` set.

        Args:
            kind: the event kind (``start``, ``rate``, ...).
            **fields: the event's other fields; must be JSON-serialisable and finite.

        Returns:
            The event as written.

        Raises:
            ValueError: a field is NaN or infinite (not valid JSON), or the writer is closed.
        """
        event = {"event": kind, "time": time.time(), **fields}
        line = json.dumps(event, allow_nan=False, default=str)
        # One write call for the whole line so that a kill leaves at worst one cut last line.
        self._file.write(line + "\n")
        self._file.flush()
        return event

    def close(self) -> None:
        """Flush, fsync (survive a host crash, not only a container kill) and close. Idempotent."""
        if self._file.closed:
            return
        self._file.flush()
        # Some filesystems (e.g. certain FUSE mounts) refuse fsync; the data is flushed anyway.
        with contextlib.suppress(OSError):
            os.fsync(self._file.fileno())
        self._file.close()
