"""Shared fixtures. Tests marked `engine` use the real Docker engine that `make engine` starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def engine():
    """The real engine; a test that needs it fails (never skips) when none answers."""
    from milabox.engine import Engine
    from milabox.errors import EngineError
    try:
        return Engine()
    except EngineError as e:
        pytest.fail(f"{e} — run `make engine` first (make test does)")


@pytest.fixture
def benchmarks_copy(tmp_path, monkeypatch):
    """A private copy of benchmarks/ that a test may add broken benchmarks to (MILABOX_BENCHMARKS)."""
    folder = tmp_path / "benchmarks"
    shutil.copytree(PROJECT / "benchmarks", folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("MILABOX_BENCHMARKS", str(folder))
    return folder


@pytest.fixture
def vendors_copy(tmp_path, monkeypatch):
    """A private copy of vendor_bases/ that a test may break (MILABOX_VENDORS)."""
    folder = tmp_path / "vendor_bases"
    shutil.copytree(PROJECT / "vendor_bases", folder)
    monkeypatch.setenv("MILABOX_VENDORS", str(folder))
    return folder
