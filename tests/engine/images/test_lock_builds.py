"""The suite as a whole: selection, the joint lock, the README's table, and every smoke benchmark on the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import _Quiet

from milabox.definitions.vendors import get_vendor


def _pip_freeze(engine, image: str, tmp_path: Path) -> str:
    from milabox.engine import ContainerRequest
    log = tmp_path / f"freeze-{abs(hash(image))}.log"
    request = ContainerRequest(image=image, command=("pip", "freeze"), labels={"milabox.benchmark": "pip-freeze"})
    with open(log, "wb") as out, engine.container(request) as container:
        container.start(out)
        assert container.wait(120).code == 0
    return log.read_text()


@pytest.mark.engine
def test_two_builds_from_the_same_lock_freeze_the_same(engine, tmp_path):
    """The runtime image built again from scratch (no cache) from the same lock: identical `pip freeze`."""
    from milabox.images.build import build_runtime
    from milabox.images.naming import runtime_tag
    from milabox.images.sources import discover
    cpu = get_vendor("cpu")
    first = build_runtime(engine, cpu, discover(), _Quiet(), tmp_path)
    again_tag = "milabox-test/runtime-again:cpu"
    try:
        again = build_runtime(engine, cpu, discover(), _Quiet(), tmp_path, no_cache=True, tag=again_tag)
        assert again.cached_steps <= 1 and first.tag == runtime_tag(cpu)
        frozen = _pip_freeze(engine, first.tag, tmp_path)
        assert "torch==" + cpu.torch_version in frozen.splitlines()
        assert frozen == _pip_freeze(engine, again_tag, tmp_path)
        labels = engine.image(again_tag).labels
        assert labels["milabox.lock"] == "cpu.txt" and labels["milabox.lock_sha256"] == engine.image(first.tag).labels[
            "milabox.lock_sha256"]
    finally:
        engine.remove_image(again_tag)
    assert engine.containers() == []
