"""Checked archives, results packs and registry names, without an engine: small real archives on disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from milabox.errors import ConfigError, ShipError
from milabox.reporting.formats import format_report
from milabox.reporting.summary import summarize
from milabox.rundir.layout import write_json_atomic
from milabox.rundir.read import load_run
from milabox.shipping.archive import SUMS_NAME, ArchiveWriter, read_part, scan
from milabox.shipping.bundle import verify_bundle
from milabox.shipping.registry import parse_registry
from milabox.shipping.resultspack import IMPORT_NAME, import_results, pack_results

LONG = "run-" + "x" * 120 + "/r0-d0/events.jsonl"  # longer than a tar header's 100-byte name field


def _archive(path: Path) -> Path:
    with ArchiveWriter(path) as w:
        w.add_bytes("a.json", b'{"a": 1}\n')
        w.add_stream("b.bin", [b"\x00\x01" * 300, b"", b"z" * 7])
        w.add_bytes(LONG, b"long name\n")
    return path


def _raw(parts: list[tuple[str, bytes]], sums: str | None) -> bytes:
    """An archive in milabox's layout whose SHA256SUMS says what the test wants (None: no SHA256SUMS)."""
    out = b""
    entries = parts + ([(SUMS_NAME, sums.encode())] if sums is not None else [])
    for name, data in entries:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out += info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict") + data + bytes(-len(data) % 512)
    return out + bytes(1024)


def _sums(parts: list[tuple[str, bytes]]) -> str:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in parts)


def test_archive_round_trip_is_a_plain_tar_whose_sums_check(tmp_path):
    path = _archive(tmp_path / "a.tar")
    parts = scan(path)
    assert list(parts) == ["a.json", "b.bin", LONG]
    assert parts["b.bin"].size == 607 and parts["b.bin"].sha256 == hashlib.sha256(b"\x00\x01" * 300 + b"z" * 7).hexdigest()
    with tarfile.open(path) as tar:  # any tar reads it; SHA256SUMS is what sha256sum -c reads
        assert tar.getnames() == ["a.json", "b.bin", LONG, SUMS_NAME]
        tar.extractall(tmp_path / "x", filter="data")
    check = subprocess.run(["sha256sum", "-c", SUMS_NAME], cwd=tmp_path / "x", capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert b"".join(read_part(path, parts["b.bin"])) == b"\x00\x01" * 300 + b"z" * 7
    assert not list(tmp_path.glob(".*partial"))


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory where there is one (thousands of small rewrites; a busy disk makes them slow)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(dir=shm, prefix="milabox-test-"))
        yield folder
        shutil.rmtree(folder)
    else:
        yield tmp_path


def test_every_one_byte_change_anywhere_is_refused(scratch):
    good = _archive(scratch / "good.tar").read_bytes()
    bad = scratch / "bad.tar"
    sums = good.index(b"  a.json\n") - 64  # SHA256SUMS text: where the parsing is, try every byte value
    changes = [(offset, 0x01) for offset in range(len(good))]
    changes += [(offset, flip) for offset in (sums, sums + 64, sums + 65, sums + 66, sums + 72) for flip in range(2, 256)]
    accepted = []
    for offset, flip in changes:
        data = bytearray(good)
        data[offset] ^= flip
        bad.write_bytes(data)
        try:
            scan(bad)
        except ShipError:
            continue
        accepted.append((offset, flip))
    assert accepted == [], f"changes at (offset, xor) {accepted[:10]} went unnoticed"


def test_every_truncation_and_any_trailing_data_is_refused(scratch):
    good = _archive(scratch / "good.tar").read_bytes()
    bad = scratch / "bad.tar"
    for length in range(len(good)):
        bad.write_bytes(good[:length])
        with pytest.raises(ShipError, match="truncated|refused"):
            scan(bad)
    bad.write_bytes(good + b"\0")
    with pytest.raises(ShipError, match="data follows the end"):
        scan(bad)
    bad.write_bytes(good[:-1024 - 512])  # cut at the end marker: "ends inside"
    with pytest.raises(ShipError, match="truncated: the file ends at byte"):
        scan(bad)


def test_checksum_mismatch_names_part_expected_and_actual(tmp_path):
    parts = [("images.tar", b"original bytes")]
    sums = _sums(parts)
    path = tmp_path / "t.tar"
    path.write_bytes(_raw([("images.tar", b"Original bytes")], sums))
    with pytest.raises(ShipError) as err:
        scan(path)
    message = str(err.value)
    assert "images.tar" in message and hashlib.sha256(b"original bytes").hexdigest() in message
    assert hashlib.sha256(b"Original bytes").hexdigest() in message and "\n" not in message


@pytest.mark.parametrize("parts, sums, expected", [
    ([("a", b"1"), ("b", b"2")], _sums([("a", b"1")]), "part 'b' is not listed"),
    ([("a", b"1")], _sums([("a", b"1"), ("b", b"2")]), "part 'b' listed in SHA256SUMS is missing"),
    ([("a", b"1")], None, "has no SHA256SUMS"),
    ([("a", b"1")], "not a checksum line\n", "line 1 is not"),
    ([("a", b"1"), ("a", b"1")], _sums([("a", b"1")]), "appears twice"),
])
def test_parts_must_match_the_list_exactly(tmp_path, parts, sums, expected):
    path = tmp_path / "t.tar"
    path.write_bytes(_raw(parts, sums))
    with pytest.raises(ShipError, match=expected):
        scan(path)


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "run/../../evil", "run//x", "./x", "a\\b", "x\ny"])
def test_traversal_and_odd_names_are_refused(tmp_path, name):
    path = tmp_path / "t.tar"
    parts = [(name, b"payload")]
    path.write_bytes(_raw(parts, _sums(parts)))
    with pytest.raises(ShipError, match="not a plain relative path"):
        scan(path)
    with pytest.raises(ShipError, match="not a plain relative path"):
        ArchiveWriter(tmp_path / "w.tar").add_bytes(name, b"x")


def test_a_tar_made_by_other_tools_is_refused(tmp_path):
    path = tmp_path / "other.tar"
    with tarfile.open(path, "w") as tar:  # PAX format, real mtimes: not milabox's canonical form
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(ShipError, match="not a plain relative path"):
        scan(path)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("fine.txt")
        info.size, info.mtime = 3, 1_700_000_000
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ShipError, match="not the one milabox writes"):
        scan(path)


def test_a_part_changed_after_the_check_is_never_streamed_whole(tmp_path):
    path = tmp_path / "big.tar"
    data = os.urandom(5 * 2**20 // 2)
    with ArchiveWriter(path) as w:
        w.add_bytes("images.tar", data)
    part = scan(path)["images.tar"]
    with open(path, "r+b") as fh:  # changed between the check and the load
        fh.seek(part.offset + part.size - 10)
        fh.write(b"X")
    got = []
    with pytest.raises(ShipError, match="changed after it was checked"):
        got.extend(read_part(path, part))
    assert sum(map(len, got)) < part.size  # the consumer never saw a complete stream


def test_a_failed_write_leaves_no_file(tmp_path):
    def broken():
        yield b"some bytes"
        raise RuntimeError("engine went away")

    with pytest.raises(RuntimeError), ArchiveWriter(tmp_path / "x.tar") as w:
        w.add_stream("images.tar", broken())
    assert list(tmp_path.iterdir()) == []


def test_a_non_bundle_archive_is_not_loaded(tmp_path):
    path = _archive(tmp_path / "a.tar")
    with pytest.raises(ShipError, match="has no bundle.json part"):
        verify_bundle(path)


# ---- results packs -----------------------------------------------------------------------------------------


def _run_folder(root: Path, name: str = "20261124-100000-cpu-smoke") -> Path:
    run = root / name
    attempt = run / "matmul-fp32" / "r0-dall"
    attempt.mkdir(parents=True)
    write_json_atomic(run / "manifest.json", {"format": 1, "benchmarks": ["matmul-fp32"], "status": "complete",
                                              "vendor": "cpu", "host": "vendor-lab", "size": "smoke"})
    write_json_atomic(run / "provenance.json", {"engine": "test"})
    write_json_atomic(attempt / "record.json", {
        "format": 1, "benchmark": "matmul-fp32", "group": "matmul", "repeat": 0, "device": "all",
        "plan": "per_device", "unit": "TFLOPS", "weight": 0.5, "size": "smoke", "status": "ok", "rate": 0.17})
    events = [{"event": "rate", "time": 1.0, "step": i, "value": 0.17, "unit": "TFLOPS"} for i in range(3)]
    events.append({"event": "summary", "time": 2.0, "rate": 0.17, "unit": "TFLOPS", "items": 1, "seconds": 1,
                   "steps": 3, "warmup": 1})
    (attempt / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (attempt / "container.log").write_text("ok\n")
    return run


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_results_pack_imports_as_a_run_that_reports_like_the_original(tmp_path):
    run = _run_folder(tmp_path / "there")
    pack = pack_results(run, tmp_path / "results.tar")
    assert pack["files"] == 5 and pack["run_summary"]["host"] == "vendor-lab"
    result = import_results(tmp_path / "results.tar", tmp_path / "here")
    assert result.run_dir == tmp_path / "here" / run.name
    imported = _tree(result.run_dir)
    assert json.loads(imported.pop(IMPORT_NAME))["pack"]["run"] == run.name
    assert imported == _tree(run)  # every file, byte for byte
    assert [p.name for p in (tmp_path / "here").iterdir()] == [run.name]  # no staging left
    here, there = (json.loads(format_report(summarize([load_run(r)]), "json")) for r in (result.run_dir, run))
    assert here["runs"] == [str(result.run_dir)] and here["benchmarks"][0]["name"] == "matmul-fp32"
    assert {**here, "runs": None} == {**there, "runs": None}
    with pytest.raises(ShipError, match="already exists"):
        import_results(tmp_path / "results.tar", tmp_path / "here")


def test_a_tampered_results_pack_imports_nothing(tmp_path):
    run = _run_folder(tmp_path / "there")
    path = tmp_path / "results.tar"
    pack_results(run, path)
    record = scan(path)[f"{run.name}/matmul-fp32/r0-dall/record.json"]
    data = bytearray(path.read_bytes())
    data[record.offset + data[record.offset:record.offset + record.size].index(b"0.17") + 2] = ord("9")  # 0.17 -> 0.97
    path.write_bytes(data)
    with pytest.raises(ShipError, match="record.json' does not match its checksum"):
        import_results(path, tmp_path / "here")
    assert list((tmp_path / "here").iterdir()) == []


def test_a_pack_with_parts_outside_its_run_is_refused(tmp_path):
    parts = [("pack.json", json.dumps({"format": 1, "kind": "milabox-results", "run": "r1"}).encode()),
             ("r1/manifest.json", b"{}"), ("elsewhere/x", b"x")]
    path = tmp_path / "p.tar"
    path.write_bytes(_raw(parts, _sums(parts)))
    with pytest.raises(ShipError, match="'elsewhere/x' is outside the run folder r1/"):
        import_results(path, tmp_path / "here")
    assert list((tmp_path / "here").iterdir()) == []


def test_packing_refuses_links_and_non_runs(tmp_path):
    run = _run_folder(tmp_path)
    (run / "link").symlink_to("/etc/passwd")
    with pytest.raises(ShipError, match="not a regular file"):
        pack_results(run, tmp_path / "p.tar")
    (run / "manifest.json").unlink()
    with pytest.raises(Exception, match="manifest.json: missing"):
        pack_results(run, tmp_path / "p.tar")
    assert not (tmp_path / "p.tar").exists()


def test_cli_refuses_a_tampered_pack_in_one_line(tmp_path):
    run = _run_folder(tmp_path / "there")
    path = tmp_path / "results.tar"
    pack_results(run, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "milabox", "results", "import", str(path), "--into",
                           str(tmp_path / "here")], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("milabox: error: ") and "refused" in lines[0], proc.stderr


# ---- registry names ----------------------------------------------------------------------------------------


def test_registry_names_map_milabox_images_under_the_prefix():
    reg = parse_registry("127.0.0.1:5000/team/bench")
    assert reg.remote("milabox/matmul:cpu-0.1.0") == ("127.0.0.1:5000/team/bench/matmul", "cpu-0.1.0")
    assert parse_registry("localhost:5000").remote("milabox/runtime:cuda-0.1.0") == (
        "localhost:5000/milabox/runtime", "cuda-0.1.0")
    assert str(parse_registry("registry.example.com/x/")) == "registry.example.com/x"


@pytest.mark.parametrize("value", ["team/bench", "matmul", "127.0.0.1:5000/Upper", "host:port/x", "1.2.3.4:5000/a//b"])
def test_bad_registry_is_one_clear_error(value):
    with pytest.raises(ConfigError, match="--registry"):
        parse_registry(value)


# ---- progress display ----------------------------------------------------------------------------------------


def test_transfer_display_shows_bytes_of_total_rate_and_a_final_line():
    from milabox.cli.ship import TransferDisplay
    out = io.StringIO()
    display = TransferDisplay(out, interval_s=0, min_bytes=1000)
    display.transfer_started("saving 2 images", 4_000_000_000, exact=False)
    display.transfer_advanced("saving 2 images", 4_100_000_000)  # past an estimate: never shows 100 % early
    display.transfer_ended("saving 2 images", 4_100_000_000)
    display.transfer_started("checking small.tar", 10)  # too small to be worth a line
    display.transfer_ended("checking small.tar", 10)
    lines = out.getvalue().splitlines()
    assert lines[0] == "saving 2 images (~4.0 GB)"
    assert lines[1].startswith("  saving 2 images: 4.1 GB / ~4.0 GB (99%), ") and "/s, " in lines[1]
    assert lines[2].startswith("  saving 2 images: 4.1 GB in ") and len(lines) == 3
