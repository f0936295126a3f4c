"""Fixtures the engine tests of several rooms share: the CPU images, the planted DDP benchmark, a Slurm cluster."""

from __future__ import annotations

import pytest
from helpers import CPU, DDP_MAIN, DDP_TOML, _build, _Quiet
from slurm_fixture import slurm_cluster  # noqa: F401 (a fixture: tests/engine/cluster uses it)

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.images.build import build
from milabox.images.naming import benchmark_tag
from milabox.images.sources import discover


@pytest.fixture(scope="session")
def cpu_images(engine, tmp_path_factory):
    """The CPU runtime, matmul and bert images (built here, or already built by `make demo`)."""
    results, _ = _build(engine, ["matmul", "bert"], tmp_path_factory.mktemp("logs"))
    return {r.name: r for r in results}


@pytest.fixture
def ddp_benchmark(engine, benchmarks_copy, tmp_path):
    """The planted DDP benchmark, built on the CPU runtime image; its image is removed afterwards."""
    (benchmarks_copy / "ddpsmoke").mkdir()
    (benchmarks_copy / "ddpsmoke" / "main.py").write_text(DDP_MAIN)
    (benchmarks_copy / "ddpsmoke" / "benchmark.toml").write_text(DDP_TOML)
    build(engine, select(["ddpsmoke"], all_benchmarks()), CPU, discover(), _Quiet(), tmp_path / "logs")
    yield benchmarks_copy
    engine.remove_image(benchmark_tag("ddpsmoke", CPU))
