"""A bundle carries the milabox wheel that made it, listed in its manifest and checked like every other part.
The engine here is the in-memory fake (tests/fakes.py); the wheel is really built by pip from this checkout."""

from __future__ import annotations

import json
import tarfile
import zipfile

import pytest
from fakes import FakeEngine

from milabox import __version__
from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.errors import ShipError
from milabox.images.naming import images_for
from milabox.shipping.archive import ArchiveWriter, scan
from milabox.shipping.bundle import MANIFEST_PART, make_bundle, verify_bundle

WHEEL = f"milabox-{__version__}-py3-none-any.whl"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    cpu = get_vendor("cpu")
    benchmarks = select(["matmul-fp32"], all_benchmarks())
    engine = FakeEngine([i.tag for i in images_for(benchmarks, cpu)[0]])
    path = tmp_path_factory.mktemp("bundle") / "b.tar"
    return path, make_bundle(engine, benchmarks, cpu, path, dependencies=False)


def test_the_bundle_holds_the_milabox_wheel_and_its_readme_installs_it_offline(bundle):
    path, manifest = bundle
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["README.txt", MANIFEST_PART, WHEEL, "images.tar", "SHA256SUMS"]
        readme = tar.extractfile("README.txt").read().decode()
        with zipfile.ZipFile(tar.extractfile(WHEEL)) as wheel:
            names = wheel.namelist()
    assert manifest["wheel"]["name"] == WHEEL and manifest["dependencies"] == []
    assert "milabox/__init__.py" in names and "milabox_runtime/cli.py" in names and "milabox/vendors/cpu.toml" in names
    first = next(line.strip() for line in readme.splitlines() if line.startswith("    "))
    assert first.endswith(f"pip install --no-index --find-links . {WHEEL}")
    assert "Its dependencies are not in this bundle" in readme and "'docker<8,>=7.1'" in readme
    assert verify_bundle(path)[0]["wheel"] == manifest["wheel"]


def _rewrite(source, target, change):
    """The same bundle, parts re-written (so the checksums match) after ``change(name, data)``."""
    parts = scan(source)
    with open(source, "rb") as fh, ArchiveWriter(target) as writer:
        for name, part in parts.items():
            fh.seek(part.offset)
            data = change(name, fh.read(part.size))
            if data is not None:
                writer.add_bytes(name, data)


def test_a_wheel_other_than_the_one_listed_or_missing_is_refused(bundle, tmp_path):
    path, _ = bundle
    swapped = tmp_path / "swapped.tar"
    _rewrite(path, swapped, lambda name, data: data + b"\0" if name == WHEEL else data)
    with pytest.raises(ShipError, match=f"wheel '{WHEEL}' listed in bundle.json is another file than the one listed"):
        verify_bundle(swapped)
    missing = tmp_path / "missing.tar"
    _rewrite(path, missing, lambda name, data: None if name == WHEEL else data)
    with pytest.raises(ShipError, match=f"wheel '{WHEEL}' listed in bundle.json is not in the bundle"):
        verify_bundle(missing)


def test_a_bundle_made_before_wheels_still_loads(bundle, tmp_path):
    path, _ = bundle
    old = tmp_path / "old.tar"

    def drop_wheel(name, data):
        if name == WHEEL:
            return None
        if name == MANIFEST_PART:
            manifest = json.loads(data)
            for key in ("wheel", "dependencies"):
                manifest.pop(key)
            return json.dumps(manifest).encode()
        return data

    _rewrite(path, old, drop_wheel)
    assert "wheel" not in verify_bundle(old)[0]
