"""Shared fixtures. Tests marked `engine` use the real Docker engine that `make engine` starts."""

from __future__ import annotations

import shutil

import pytest
from helpers import PROJECT


@pytest.fixture(scope="session")
def engine():
    """The real engine; a test that needs it fails (never skips) when none answers."""
    from milabox.engine.docker import Engine
    from milabox.errors import EngineError
    try:
        return Engine()
    except EngineError as e:
        pytest.fail(f"{e} — run `make engine` first (make test does)")


@pytest.fixture(autouse=True)
def no_container_outlives_its_test(request):
    """An engine test removes every milabox container it made, even when it fails, so one failure never cascades
    into unrelated tests; a container a test left behind is then reported as that test's error."""
    if request.node.get_closest_marker("engine") is None:
        yield
        return
    engine = request.getfixturevalue("engine")
    before = set(engine.containers())
    yield
    left = [c for c in engine.containers() if c not in before]
    import docker.errors
    for container in left:
        try:
            engine.client.containers.get(container).remove(force=True)
        except docker.errors.NotFound:
            pass
    if left:
        pytest.fail(f"{len(left)} milabox container(s) outlived the test (removed now)", pytrace=False)


@pytest.fixture
def benchmarks_copy(tmp_path, monkeypatch):
    """A private copy of the bundled suite that a test may change or add broken benchmarks to (MILABOX_SUITE)."""
    folder = tmp_path / "benchmarks"
    shutil.copytree(PROJECT / "milabox" / "suite", folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("MILABOX_SUITE", str(folder))
    return folder


@pytest.fixture
def vendors_copy(tmp_path, monkeypatch):
    """A private copy of milabox/vendors/ that a test may break (MILABOX_VENDORS)."""
    folder = tmp_path / "vendors"
    shutil.copytree(PROJECT / "milabox" / "vendors", folder)
    monkeypatch.setenv("MILABOX_VENDORS", str(folder))
    return folder
