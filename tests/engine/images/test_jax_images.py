"""The JAX path on the real Docker engine: the CPU JAX runtime image and the brax image build, and brax's smoke size
runs in it (jax's device facts in meta, a positive env steps/s rate)."""

from __future__ import annotations

import json

import pytest
from helpers import CPU, _build, milabox

from milabox.images.naming import benchmark_tag, runtime_tag

pytestmark = pytest.mark.engine


def test_brax_builds_from_the_jax_runtime_and_its_smoke_size_runs(engine, tmp_path):
    results, _ = _build(engine, ["brax"], tmp_path / "logs")
    assert [r.name for r in results] == ["runtime-jax", "brax"]  # no torch runtime for a JAX-only selection
    runtime = engine.image(runtime_tag(CPU, "jax"))
    assert runtime is not None and runtime.labels["milabox.jax"] == CPU.jax.version
    assert "milabox.torch" not in runtime.labels
    assert engine.image(benchmark_tag("brax", CPU)) is not None
    run = milabox("run", "brax", "--vendor", "cpu", "--size", "smoke", "--run-dir", str(tmp_path / "run"), timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    (events,) = (tmp_path / "run").rglob("events.jsonl")
    records = [json.loads(line) for line in events.read_text().splitlines()]
    meta = next(r for r in records if r["event"] == "meta")
    assert (meta["framework"], meta["jax"], meta["torch"]) == ("jax", CPU.jax.version, None)
    summary = next(r for r in records if r["event"] == "summary")
    assert summary["rate"] > 0 and summary["unit"] == "env steps/s"
