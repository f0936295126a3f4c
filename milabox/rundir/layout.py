"""The run folder's format: its file names and version, the attempt folders' names, and atomic writes.

A run folder (docs/results-format.md) holds ``manifest.json``, ``provenance.json`` and one folder per attempt,
``<benchmark>/r<repeat>-d<device>/``, with ``record.json``, ``events.jsonl``, ``container.log`` and
``telemetry.jsonl``. Files are replaced atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

#: The result-file format version this module reads and the host writes.
FORMAT_VERSION = 1

MANIFEST_NAME = "manifest.json"
RECORD_NAME = "record.json"
EVENTS_NAME = "events.jsonl"
LOG_NAME = "container.log"
TELEMETRY_NAME = "telemetry.jsonl"  # one per attempt, written by the host while the container runs
IDLE_NAME = "idle.jsonl"  # one per run: the devices sampled idle before the first attempt
HOST_DEVICE = "cpu"  # the host CPU's device label in telemetry samples (beside any accelerator's)
PROVENANCE_NAME = "provenance.json"  # one per run

#: An attempt folder: ``r<repeat>-d<device>``, e.g. ``r0-d0`` or ``r2-dall``.
ATTEMPT_DIR_RE = re.compile(r"^r(\d+)-d(.+)$")

def attempt_folder(benchmark: str, repeat: int, device_label: str) -> str:
    """An attempt's folder inside the run folder, ``<benchmark>/r<repeat>-d<device>`` (matches ATTEMPT_DIR_RE)."""
    return f"{benchmark}/r{repeat}-d{device_label}"



def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON so that readers see either the old file or the complete new one.

    The JSON goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` with ``os.replace``. The file ends up mode 0644.

    Args:
        path: the destination file; its folder must exist.
        obj: a JSON-serializable value (NaN and infinity are refused: they are not JSON).

    Returns:
        None.

    Raises:
        OSError: the folder is missing or not writable.
        TypeError, ValueError: ``obj`` is not serializable as strict JSON (nothing is written).
    """
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"  # serialize before touching disk
    write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) so that readers see either the old file or the complete new one.

    Same method as ``write_json_atomic``: a temporary file in the same folder, fsync, ``os.replace``.

    Args:
        path: the destination file; its folder must exist.
        text: the content.

    Returns:
        None.

    Raises:
        OSError: the folder is missing or not writable (nothing is left behind).
    """
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; best effort (not possible on every platform)
        dir_fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)

