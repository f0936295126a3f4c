"""Results packs: a whole run folder in one checked archive, carried back from a vendor and imported as a local run.

A pack (see docs/bundles.md) is a :mod:`milabox.shipping.archive` file with ``pack.json`` (who packed which run, when,
with which milabox), every regular file of the run folder under ``<run name>/`` (manifest.json, provenance
files, every attempt folder), and ``SHA256SUMS``. ``import`` unpacks into a hidden staging folder while
checking every byte, reads the run back as ``milabox report`` would, and only then renames it into place, so a
refused pack leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from milabox.errors import ResultsError, ShipError
from milabox.origin import host_facts
from milabox.rundir.layout import MANIFEST_NAME, write_json_atomic
from milabox.rundir.read import load_run, read_manifest
from milabox.shipping.archive import ArchiveWriter, QuietTransfer, TransferReporter, check_name, scan
from milabox.shipping.manifest import check_manifest

PACK_FORMAT = 1
PACK_KIND = "milabox-results"
PACK_PART = "pack.json"
IMPORT_NAME = "import.json"  # written into an imported run folder: where it came from


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _run_files(run_dir: Path) -> list[tuple[str, Path]]:
    """Every regular file of a run folder as (path relative to it, path); anything else is refused."""
    files = []
    for folder, dirs, names in os.walk(run_dir, followlinks=False):
        for name in sorted(dirs):
            if (Path(folder) / name).is_symlink():
                raise ShipError(f"{Path(folder) / name}: a symbolic link in a run folder; a results pack holds "
                                "regular files only")
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                raise ShipError(f"{path}: not a regular file (a link or a special file); a results pack holds "
                                "regular files only")
            files.append((path.relative_to(run_dir).as_posix(), path))
    return files


def pack_results(run_dir: Path, out: Path, reporter: TransferReporter | None = None) -> dict[str, Any]:
    """Pack a run folder, all of it, into one checked archive (written atomically).

    Args:
        run_dir: the run folder (it must hold a readable manifest.json).
        out: the pack file to write (replaced if present).
        reporter: hears progress (bytes of the run's files).

    Returns:
        The pack's ``pack.json`` content.

    Raises:
        ShipError: a file of the folder is a link or special file, or ``out`` is inside the folder.
        ResultsError: ``run_dir`` is not a run folder (no or a malformed manifest.json).
    """
    run_dir, out = Path(run_dir).resolve(), Path(out)
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: not a run folder (no such directory)")
    manifest = read_manifest(run_dir / MANIFEST_NAME)
    if out.resolve().is_relative_to(run_dir):
        raise ShipError(f"-o {out}: the pack cannot be written inside the run folder it packs")
    if not out.parent.is_dir():
        raise ShipError(f"-o {out}: folder {out.parent} does not exist")
    name = check_name(run_dir.name, str(run_dir))
    files = _run_files(run_dir)
    total = sum(p.stat().st_size for _, p in files)
    run = manifest.raw
    pack = {
        "format": PACK_FORMAT, "kind": PACK_KIND, "run": name, "packed": _now(),
        "packed_by": host_facts(), "files": len(files), "bytes": total,
        "run_summary": {k: run.get(k) for k in ("host", "vendor", "size", "status", "milabox_version",
                                                  "source_commit", "started", "ended", "benchmarks")},
    }
    reporter = reporter or QuietTransfer()
    what = f"packing {name}"
    reporter.transfer_started(what, total)
    done = 0
    with ArchiveWriter(out) as writer:
        writer.add_bytes(PACK_PART, (json.dumps(pack, indent=2) + "\n").encode())
        for rel, path in files:
            done += writer.add_file(f"{name}/{rel}", path, reporter, what, done).size
    reporter.transfer_ended(what, done)
    return pack


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_results` did.

    Attributes:
        run_dir: the imported run folder.
        pack: the pack's ``pack.json``.
    """

    run_dir: Path
    pack: dict[str, Any]


def _read_pack(path: Path, staging: Path) -> dict[str, Any]:
    try:
        pack = json.loads((staging / PACK_PART).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ShipError(f"{path}: {PACK_PART} is missing or not JSON ({e}); not a milabox results pack") from None
    pack = check_manifest(path, PACK_PART, pack, PACK_KIND, PACK_FORMAT, "results pack")
    run = pack.get("run")
    if not isinstance(run, str) or "/" in run:
        raise ShipError(f"{path}: {PACK_PART} field 'run' must be the run folder's name, got {run!r}")
    check_name(run, str(path))
    return pack


def import_results(path: Path, into: Path, reporter: TransferReporter | None = None) -> ImportResult:
    """Check a results pack completely and unpack it as ``INTO/<run name>``, a run folder like a local one.

    Args:
        path: the pack file.
        into: the folder of runs to add it to (created if missing).
        reporter: hears progress (bytes of the pack read).

    Returns:
        The imported run folder and the pack's manifest.

    Raises:
        ShipError: the pack is truncated, damaged, tampered with, has a part outside its run folder, is not a
            results pack, or ``INTO/<run name>`` already exists. Nothing is left behind.
        ResultsError: the unpacked folder is not a readable run (its manifest or a record is malformed).
    """
    path, into = Path(path), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=into))
    try:
        run_name: list[str] = []

        def sink(name: str) -> IO[bytes]:
            if name != PACK_PART:
                top = name.split("/", 1)[0]
                if "/" not in name or (run_name and top != run_name[0]):
                    raise ShipError(f"{path}: part {name!r} is outside the run folder "
                                    f"{run_name[0] if run_name else '<run>'}/; refused")
                run_name[:] = [top]
            target = staging / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                return open(target, "xb")  # scan closes it; "x": never over another part
            except OSError as e:
                raise ShipError(f"{path}: part {name!r} cannot be unpacked ({e.strerror or e}); refused") from None

        scan(path, reporter, f"checking {path.name}", sink)
        pack = _read_pack(path, staging)
        if run_name and run_name[0] != pack["run"]:
            raise ShipError(f"{path}: parts are under {run_name[0]}/ but {PACK_PART} names run {pack['run']!r}")
        source = staging / pack["run"]
        if not (source / MANIFEST_NAME).is_file():
            raise ShipError(f"{path}: holds no {pack['run']}/{MANIFEST_NAME}; not a run folder")
        load_run(source)  # the same reading report and compare do: a malformed record is refused here
        target = into / pack["run"]
        if target.exists():
            raise ShipError(f"{target} already exists (imported before?); pass --into another folder or remove it")
        write_json_atomic(source / IMPORT_NAME, {"imported": _now(), "from": str(path.resolve()),
                                                 "imported_by": host_facts(), "pack": pack})
        os.rename(source, target)
        return ImportResult(target, pack)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

