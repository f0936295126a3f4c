"""Checked archives: one tar file whose every part is listed with its SHA-256, read back strictly.

Bundles (images going to a vendor) and results packs (runs coming back) share this container. It is a plain
GNU tar — ``tar -tf`` lists it, ``tar -xf FILE && sha256sum -c SHA256SUMS`` checks it by hand — written in one
canonical form: regular files only, fixed header fields (mode 0644, owner 0, time 0), zero padding, two zero
blocks at the end, and ``SHA256SUMS`` as the last part. A reader therefore demands that every byte is what the
writer would have written: each header must equal, byte for byte, the one regenerated from its name and size;
padding and the end marker must be zeros; nothing may follow the end; every part must be listed in
``SHA256SUMS`` exactly once and match its SHA-256. Any one-byte change, a cut copy, an extra or missing part
is refused with one line naming the part and what differs.

Checksums detect damage and tampering in transit; they do not prove who made the archive (publish the
archive's own ``sha256sum`` through another channel for that).

Parts of any size stream through in 1 MiB chunks: a part whose size is not known in advance (a ``docker
save`` stream) gets a placeholder header that is rewritten once its data is written, so nothing is held in
memory or spooled to a second file. The ``SHA256SUMS`` part itself is :mod:`milabox.shipping.checksums`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from milabox.errors import ShipError
from milabox.shipping.checksums import MAX_SUMS, SUMS_NAME, check_sums, sums_bytes

BLOCK = 512
CHUNK = 1 << 20
_ZERO = bytes(BLOCK)
_MAX_NAME = 1024  # bytes; run folders' paths are far shorter


class TransferReporter(Protocol):
    """What a long transfer (saving, checking, loading, packing) tells whoever watches it."""

    def transfer_started(self, what: str, total: int | None, exact: bool = True) -> None:
        """A transfer of ``total`` bytes begins (``exact`` False: ``total`` is an estimate; None: unknown)."""

    def transfer_advanced(self, what: str, done: int) -> None:
        """``done`` bytes of it are through (called every chunk; a display should throttle)."""

    def transfer_ended(self, what: str, done: int) -> None:
        """It ended after ``done`` bytes."""


class QuietTransfer:
    """A reporter that says nothing (the default)."""

    def transfer_started(self, what: str, total: int | None, exact: bool = True) -> None: ...
    def transfer_advanced(self, what: str, done: int) -> None: ...
    def transfer_ended(self, what: str, done: int) -> None: ...


@dataclass(frozen=True)
class Part:
    """One part of a checked archive.

    Attributes:
        name: its relative path in the archive.
        offset: where its data starts in the archive file (bytes).
        size: its size in bytes.
        sha256: hex SHA-256 of its data (as read, or as written).
    """

    name: str
    offset: int
    size: int
    sha256: str


def check_name(name: str, where: str) -> str:
    """Refuse a part name that could land outside the folder an archive is unpacked into.

    Args:
        name: the part's path, ``/``-separated.
        where: the archive, for the message.

    Returns:
        The name, unchanged.

    Raises:
        ShipError: the name is empty, absolute, has ``..``/``.``/empty components, a backslash or a control
            character, or is longer than 1024 bytes.
    """
    parts = name.split("/")
    bad = (not name or name.startswith("/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name)
           or any(p in ("", ".", "..") for p in parts) or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME)
    if bad:
        raise ShipError(f"{where}: part name {name!r} is not a plain relative path (absolute, '..', '.', empty, "
                        "backslash or control characters would escape or confuse the folder it unpacks into); refused")
    return name


def _header(name: str, size: int) -> bytes:
    """The one header this format allows for a part (with GNU long-name blocks where the name needs them)."""
    info = tarfile.TarInfo(name)  # defaults: regular file, mode 0644, uid/gid 0, no owner names, mtime 0
    info.size = size
    # GNU format: sizes beyond 8 GiB fit the same 512 bytes (base-256), so a placeholder can be rewritten in place.
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def _padding(size: int) -> int:
    return -size % BLOCK


class ArchiveWriter:
    """Write a checked archive atomically: parts go to a hidden ``.NAME.partial`` file renamed over ``path`` by
    :meth:`close`; on an exception inside ``with`` (or :meth:`abort`) the partial file is removed.

    Args:
        path: the archive to write (replaced if it exists, only once it is complete).

    Raises:
        OSError: the folder is missing or not writable.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._fh: IO[bytes] | None = open(self._tmp, "wb")  # noqa: SIM115 (closed by close/abort)
        self.parts: list[Part] = []

    def add_bytes(self, name: str, data: bytes) -> Part:
        """Add a small part held in memory."""
        return self.add_stream(name, [data])

    def add_file(self, name: str, source: Path, reporter: TransferReporter | None = None, what: str = "",
                 base: int = 0) -> Part:
        """Add a file, streamed; its size is what is actually read (a file still growing is taken as read)."""
        with open(source, "rb") as fh:
            return self.add_stream(name, iter(lambda: fh.read(CHUNK), b""), reporter, what, base)

    def add_stream(self, name: str, chunks: Iterable[bytes], reporter: TransferReporter | None = None,
                   what: str = "", base: int = 0) -> Part:
        """Add a part from a stream of unknown length; ``reporter`` hears ``base`` + bytes written so far.

        Returns:
            The part, with its size and SHA-256.

        Raises:
            ShipError: the name is not a plain relative path, or is already in the archive.
        """
        fh = self._open()
        check_name(name, str(self.path))
        if name == SUMS_NAME or any(p.name == name for p in self.parts):
            raise ShipError(f"{self.path}: part {name!r} is already in the archive")
        start = fh.tell()
        placeholder = _header(name, 0)
        fh.write(placeholder)
        digest, size = hashlib.sha256(), 0
        for chunk in chunks:
            fh.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if reporter is not None:
                reporter.transfer_advanced(what, base + size)
        fh.write(bytes(_padding(size)))
        end = fh.tell()
        header = _header(name, size)
        assert len(header) == len(placeholder)  # the size field never changes the header's length (GNU format)
        fh.seek(start)
        fh.write(header)
        fh.seek(end)
        part = Part(name, start + len(header), size, digest.hexdigest())
        self.parts.append(part)
        return part

    def close(self) -> Path:
        """Write ``SHA256SUMS`` and the end marker, flush to disk and rename into place.

        Returns:
            The archive's path.
        """
        fh = self._open()
        sums = sums_bytes((p.name, p.sha256) for p in self.parts)
        fh.write(_header(SUMS_NAME, len(sums)) + sums + bytes(_padding(len(sums))) + _ZERO + _ZERO)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        self._fh = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file; never raises."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        try:
            os.unlink(self._tmp)
        except OSError:
            pass

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            raise ShipError(f"{self.path}: the archive is already closed")
        return self._fh

    def __enter__(self) -> ArchiveWriter:  # noqa: PYI034 (not subclassed)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Reader:
    """Sequential reads of an archive file that know their offset and refuse a cut copy."""

    def __init__(self, fh: IO[bytes], where: str):
        self.fh, self.where, self.pos = fh, where, 0

    def read(self, n: int, what: str) -> bytes:
        data = self.fh.read(n)
        if len(data) < n:
            raise ShipError(f"{self.where}: truncated: the file ends at byte {self.pos + len(data)}, inside {what} "
                            "(an incomplete copy); refused")
        self.pos += n
        return data

    def damaged(self, at: int, what: str) -> ShipError:
        return ShipError(f"{self.where}: damaged at byte {at}: {what}; refused")


def _read_header(r: _Reader) -> tuple[str, int, int] | None:
    """The next part's (name, size, header offset), or None at a valid end of archive."""
    start = r.pos
    block = r.read(BLOCK, "a part header")
    if block == _ZERO:
        if r.read(BLOCK, "the end-of-archive marker") != _ZERO:
            raise r.damaged(start + BLOCK, "the end-of-archive marker is not all zeros")
        if r.fh.read(1):
            raise r.damaged(r.pos, "data follows the end-of-archive marker")
        return None
    raw = block
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        name, size = info.name, info.size
        if info.type == tarfile.GNUTYPE_LONGNAME:
            if not 0 < size <= _MAX_NAME + 1:
                raise r.damaged(start, f"a long part name of {size} bytes")
            data = r.read(size + _padding(size), "a long part name")
            name = data[:size].split(b"\0", 1)[0].decode("utf-8")
            block = r.read(BLOCK, "a part header")
            raw += data + block
            size = tarfile.TarInfo.frombuf(block, "utf-8", "strict").size
    except tarfile.HeaderError as e:
        raise r.damaged(start, f"not a valid tar header ({e})") from None
    except UnicodeDecodeError:
        raise r.damaged(start, "a part name that is not UTF-8") from None
    check_name(name, r.where)  # before the format check, so a traversal attempt is named as such
    if raw != _header(name, size):
        raise r.damaged(start, f"the header of part {name!r} is not the one milabox writes (changed, or not a "
                               "milabox archive)")
    return name, size, start


def scan(path: Path, reporter: TransferReporter | None = None, what: str = "checking",
         sink: Callable[[str], IO[bytes] | None] | None = None) -> dict[str, Part]:
    """Read a checked archive from start to end and verify every byte of it (see the module's description).

    Args:
        path: the archive.
        reporter: hears progress (bytes read of the file's size).
        what: the transfer's name for the reporter.
        sink: called with each part's name (``SHA256SUMS`` excepted); a file it returns receives the part's data
            and is closed after it (unpack into a staging folder, and discard that folder if this raises).

    Returns:
        name -> part, for every part but ``SHA256SUMS``, in archive order.

    Raises:
        ShipError: the file is missing or unreadable, truncated, damaged anywhere, has a part name that is not a
            plain relative path, a duplicate part, no ``SHA256SUMS`` as its last part, a part not listed there (or
            listed but missing), or a part whose SHA-256 differs (the message names it, expected vs actual).
    """
    where = str(path)
    reporter = reporter or QuietTransfer()
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
        total = os.fstat(fh.fileno()).st_size
    except OSError as e:
        raise ShipError(f"{where}: cannot be read ({e.strerror or e})") from None
    parts: dict[str, Part] = {}
    sums: bytes | None = None
    reporter.transfer_started(what, total)
    with fh:
        r = _Reader(fh, where)
        while (head := _read_header(r)) is not None:
            name, size, start = head
            if sums is not None:
                raise r.damaged(start, f"part {name!r} follows {SUMS_NAME}, which must be the last part")
            if name in parts:
                raise r.damaged(start, f"part {name!r} appears twice")
            is_sums = name == SUMS_NAME
            if is_sums and size > MAX_SUMS:
                raise r.damaged(start, f"{SUMS_NAME} is {size} bytes, larger than any milabox writes")
            out = None if is_sums or sink is None else sink(name)
            digest, offset, left, kept = hashlib.sha256(), r.pos, size, []
            try:
                while left:
                    chunk = r.read(min(CHUNK, left), f"part {name!r}")
                    left -= len(chunk)
                    digest.update(chunk)
                    if is_sums:
                        kept.append(chunk)
                    elif out is not None:
                        out.write(chunk)
                    reporter.transfer_advanced(what, r.pos)
            finally:
                if out is not None:
                    out.close()
            if r.read(_padding(size), f"the padding of part {name!r}").strip(b"\0"):
                raise r.damaged(offset + size, f"the padding after part {name!r} is not all zeros")
            if is_sums:
                sums = b"".join(kept)
            else:
                parts[name] = Part(name, offset, size, digest.hexdigest())
        reporter.transfer_ended(what, r.pos)
    if sums is None:
        raise ShipError(f"{where}: has no {SUMS_NAME} part (not a milabox archive, or cut short); refused")
    check_sums(where, {name: part.sha256 for name, part in parts.items()}, sums)
    return parts


def read_part(path: Path, part: Part, reporter: TransferReporter | None = None, what: str = "reading") -> Iterator[bytes]:
    """Stream a part's data again, after :func:`scan`, checking it still has the SHA-256 scan saw.

    The last chunk is held back until the whole part hashes right, so a consumer (``docker load``) sees an
    incomplete stream, and refuses it, if the file changed between the check and the use.

    Args:
        path: the archive.
        part: a part :func:`scan` returned.
        reporter: hears bytes of the part streamed so far.
        what: the transfer's name for the reporter.

    Yields:
        Chunks of at most 1 MiB.

    Raises:
        ShipError: the file changed since it was checked (shorter, or different bytes).
    """
    reporter = reporter or QuietTransfer()
    reporter.transfer_started(what, part.size)
    digest, done, held = hashlib.sha256(), 0, b""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise ShipError(f"{path}: cannot be read ({e.strerror or e})") from None
    with fh:
        fh.seek(part.offset)
        while done < part.size:
            chunk = fh.read(min(CHUNK, part.size - done))
            if not chunk:
                raise ShipError(f"{path}: became shorter after it was checked (part {part.name!r}); refused")
            digest.update(chunk)
            done += len(chunk)
            if held:
                yield held
                reporter.transfer_advanced(what, done - len(chunk))
            held = chunk
    if digest.hexdigest() != part.sha256:
        raise ShipError(f"{path}: part {part.name!r} changed after it was checked (SHA-256 expected {part.sha256}, "
                        f"got {digest.hexdigest()}); refused")
    if held:
        yield held
    reporter.transfer_ended(what, done)


def read_small_part(path: Path, part: Part, limit: int = 16 * 2**20) -> bytes:
    """A small part's bytes (a manifest), checked against its SHA-256 again.

    Raises:
        ShipError: the part is larger than ``limit`` or changed since it was checked.
    """
    if part.size > limit:
        raise ShipError(f"{path}: part {part.name!r} is {part.size} bytes; a milabox manifest is far smaller; refused")
    return b"".join(read_part(path, part))
