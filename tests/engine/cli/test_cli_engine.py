"""The command line against the real engine: one clear line for what the engine lacks, and `doctor`."""

from __future__ import annotations

import pytest
from helpers import assert_one_line_error, milabox


@pytest.mark.engine
def test_missing_base_image_says_how_to_make_or_load_one(engine, vendors_copy):
    path = vendors_copy / "cpu.toml"
    text = path.read_text().replace('base_image = "debian:bookworm-slim"', 'base_image = "nowhere/none:1"')
    path.write_text(text.replace('tag = "milabox/debian:bookworm-minbase"', 'tag = "nowhere/local:1"'))
    assert_one_line_error(milabox("build", "matmul", "--vendor", "cpu"), "base image nowhere/none:1",
                          "milabox base --vendor cpu", "docker load")


@pytest.mark.engine
def test_run_with_an_image_not_built_writes_nothing(engine, benchmarks_copy, tmp_path):
    (benchmarks_copy / "never").mkdir()
    (benchmarks_copy / "never" / "main.py").write_text("")
    (benchmarks_copy / "never" / "benchmark.toml").write_text(
        'description = "never built"\nfamily = "test"\nunit = "items/s"\n[sizes.smoke]\n[sizes.full]\n')
    run_dir = tmp_path / "run"
    assert_one_line_error(milabox("run", "never", "--run-dir", str(run_dir)), "milabox/never:cpu-",
                          "is not built", "milabox build never --vendor cpu")
    assert not run_dir.exists()


@pytest.mark.engine
def test_doctor_reports_engine_and_vendors(engine):
    proc = milabox("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "engine" in proc.stdout and "Docker 20" in proc.stdout or "Docker " in proc.stdout
    for vendor in ("cpu", "cuda", "rocm", "xpu"):
        assert f"{vendor}: devices" in proc.stdout and f"{vendor}: telemetry" in proc.stdout
