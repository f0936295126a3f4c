"""The ``SHA256SUMS`` part of a checked archive: written by :class:`milabox.shipping.archive.ArchiveWriter`, read
back strictly by :func:`milabox.shipping.archive.scan`.

Its format is the one ``sha256sum`` writes and ``sha256sum -c`` reads: one ``<hex sha256>  <part name>`` line per
part, each ending with ``\\n``, in archive order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from milabox.errors import ShipError

SUMS_NAME = "SHA256SUMS"
MAX_SUMS = 64 * 2**20  # bytes: SHA256SUMS of a results pack with very many files still fits
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


def sums_bytes(entries: Iterable[tuple[str, str]]) -> bytes:
    """The ``SHA256SUMS`` part listing some parts.

    Args:
        entries: (part name, hex SHA-256) in archive order.

    Returns:
        The part's bytes (UTF-8, one line per part).
    """
    return "".join(f"{sha256}  {name}\n" for name, sha256 in entries).encode()


def check_sums(where: str, actual: Mapping[str, str], sums: bytes) -> None:
    """Check that ``SHA256SUMS`` lists exactly the parts read, each once, with the SHA-256 each was read with.

    Args:
        where: the archive, for messages.
        actual: part name -> hex SHA-256 of its data as read, in archive order (``SHA256SUMS`` itself excepted).
        sums: the ``SHA256SUMS`` part's bytes.

    Raises:
        ShipError: the list is not UTF-8, does not end with a newline, has a malformed or duplicate line, leaves a
            part out, lists a missing part, or gives a part another SHA-256 (expected vs actual in the message).
    """
    expected: dict[str, str] = {}
    try:
        text = sums.decode("utf-8")
    except UnicodeDecodeError:
        raise ShipError(f"{where}: {SUMS_NAME} is not UTF-8 text (damaged); refused") from None
    if not text.endswith("\n"):
        raise ShipError(f"{where}: {SUMS_NAME} does not end with a newline (damaged); refused")
    lines = text[:-1].split("\n")  # "\n" only: str.splitlines() would also split at \v, \f, \x1c...
    for number, line in enumerate(lines, 1):
        m = _SUM_LINE.match(line)
        if not m:
            raise ShipError(f"{where}: {SUMS_NAME} line {number} is not '<sha256>  <part>' (damaged): {line[:100]!r}; "
                            "refused")
        if m[2] in expected:
            raise ShipError(f"{where}: {SUMS_NAME} lists part {m[2]!r} twice (damaged); refused")
        expected[m[2]] = m[1]
    for name, sha256 in actual.items():
        if name not in expected:
            raise ShipError(f"{where}: part {name!r} is not listed in {SUMS_NAME} (added, or a damaged list); refused")
        if expected[name] != sha256:
            raise ShipError(f"{where}: part {name!r} does not match its checksum (SHA-256 expected {expected[name]}, "
                            f"got {sha256}): damaged or tampered with; refused")
    for name in expected:
        if name not in actual:
            raise ShipError(f"{where}: part {name!r} listed in {SUMS_NAME} is missing (removed, or a damaged list); "
                            "refused")
