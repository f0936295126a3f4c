"""Builds on the real Docker engine: the CPU images, their cache and labels, and a failed build step."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CPU, Recorder, _build

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import get_vendor
from milabox.images.naming import benchmark_tag, runtime_tag
from milabox.images.render import dockerfile_hash, render_benchmark
from milabox.images.sources import discover

pytestmark = pytest.mark.engine

def test_second_build_of_unchanged_benchmarks_is_all_cache(engine, cpu_images, tmp_path):
    results, reporter = _build(engine, ["matmul", "bert"], tmp_path)
    assert [r.name for r in results] == ["runtime", "bert", "matmul"]
    for result in results:
        assert result.steps > 0 and result.cached_steps == result.steps, result
        assert result.image_id == cpu_images[result.name].image_id
    assert reporter.steps and reporter.steps[0][1] == 1  # progress was reported step by step
    assert Path(results[-1].log_path).read_text().count("Using cache") == results[-1].steps - 1  # all but FROM


def test_images_carry_oci_and_milabox_labels(engine, cpu_images):
    info = engine.image(benchmark_tag("bert", CPU))
    assert info is not None and benchmark_tag("bert", CPU) == "milabox/bert:cpu-0.1.0"
    labels = info.labels
    assert labels["milabox.benchmark"] == "bert" and labels["milabox.vendor"] == "cpu"
    assert labels["milabox.version"] == labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["milabox.source_commit"] and labels["org.opencontainers.image.revision"]
    group = [b for b in all_benchmarks().values() if b.group == "bert"]
    assert labels["milabox.dockerfile_sha256"] == dockerfile_hash(render_benchmark(group, CPU))
    assert engine.image(runtime_tag(CPU)).labels["milabox.torch"] == CPU.torch_version


def test_failed_build_step_names_the_image_step_and_log(engine, cpu_images, vendors_copy, tmp_path):
    from milabox.errors import BuildError
    from milabox.images.build import build_runtime
    path = vendors_copy / "cpu.toml"
    path.write_text(path.read_text().replace('"ca-certificates"]', '"ca-certificates", "no-such-package-milabox"]'))
    with pytest.raises(BuildError) as err:
        build_runtime(engine, get_vendor("cpu"), discover(), Recorder(), tmp_path, tag="milabox-test/broken:cpu")
    message = str(err.value)
    assert "build of runtime (milabox-test/broken:cpu) failed at step" in message
    assert "RUN apt-get update" in message and "no-such-package-milabox" in Path(message.split("full log: ")[1]).read_text()
    assert "\n" not in message and engine.image("milabox-test/broken:cpu") is None
