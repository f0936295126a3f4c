"""The manifest part every shipped archive carries (``bundle.json``, ``pack.json``): its kind and format checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from milabox.errors import ShipError


def check_manifest(where: Path | str, part: str, manifest: object, kind: str, newest: int,
                   label: str) -> dict[str, Any]:
    """Check that a parsed manifest is a JSON object of the expected kind, in a format this milabox reads.

    Args:
        where: the archive, for messages.
        part: the manifest's part name, e.g. ``bundle.json``.
        manifest: the parsed JSON.
        kind: the ``kind`` it must have, e.g. ``milabox-bundle``.
        newest: the newest ``format`` this milabox reads (older ones are read too).
        label: what the archive is called in messages, e.g. ``bundle`` or ``results pack``.

    Returns:
        The manifest.

    Raises:
        ShipError: it is not an object of that kind, or its format is missing, not an integer, or newer.
    """
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise ShipError(f"{where}: {part} is not a milabox {label} manifest (kind {kind!r} expected)")
    fmt = manifest.get("format")
    if not isinstance(fmt, int) or fmt > newest:
        raise ShipError(f"{where}: {label} format {fmt!r} is newer than this milabox reads ({newest}); "
                        "upgrade milabox")
    return manifest
