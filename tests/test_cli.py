"""The command line as a user meets it: one clear line and a non-zero exit for every bad input, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def milabox(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milabox", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and errors[0].startswith("milabox: error: ")
    assert proc.stderr.strip().splitlines()[-1] == errors[0]  # progress lines may come before, nothing after
    for fragment in fragments:
        assert fragment in errors[0]


def test_unknown_benchmark_suggests_names():
    assert_one_line_error(milabox("run", "bret"), "unknown benchmark 'bret'", "did you mean bert")


def test_unknown_vendor_lists_platforms_and_makers():
    assert_one_line_error(milabox("build", "--vendor", "gaudi"), "unknown vendor 'gaudi'", "rocm (amd)")


def test_malformed_vendor_file_names_file_and_field(vendors_copy):
    path = vendors_copy / "cuda.toml"
    path.write_text(path.read_text().replace('torch_version = "2.13.0"', "torch_version = 2.13"))
    assert_one_line_error(milabox("render", "bert", "--vendor", "nvidia"), str(path), "'torch_version'",
                          "expected a string")


def test_malformed_benchmark_file_names_file_and_field(benchmarks_copy):
    path = benchmarks_copy / "matmul" / "benchmark.toml"
    path.write_text(path.read_text().replace('plan = "per_device"', 'plan = "everywhere"'))
    assert_one_line_error(milabox("list"), str(path), "'plan'", "valid: per_device, all_devices")


def test_engine_unreachable_says_what_was_tried_and_how_to_start_one(tmp_path):
    sock = f"unix://{tmp_path}/no-engine.sock"
    proc = milabox("build", "bert", env={"DOCKER_HOST": sock})
    assert_one_line_error(proc, sock, "make engine")
    assert not list(tmp_path.glob("*")), "nothing may be written when the engine is unreachable"


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


def test_devices_on_the_cpu_vendor_is_refused(tmp_path):
    proc = milabox("run", "matmul-fp32", "--devices", "0,1", "--run-dir", str(tmp_path / "r"))
    if "no Docker engine" in proc.stderr:
        pytest.fail("needs the engine")
    assert_one_line_error(proc, "--devices", "no selectable devices")


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    assert_one_line_error(milabox("report", str(tmp_path)), str(tmp_path))


def test_bad_size_is_a_usage_error():
    proc = milabox("run", "bert", "--size", "huge")
    assert proc.returncode == 2 and "'huge' is not one of 'smoke', 'full'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_json_has_every_benchmark_with_description_tags_and_weight():
    proc = milabox("list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert {"matmul-fp32", "bert-fp32"} <= set(rows)
    assert rows["bert-fp32"]["weight"] == 1.0 and "nlp" in rows["bert-fp32"]["tags"]
    assert rows["matmul-tf32"]["excluded_vendors"]["cpu"]


def test_render_prints_the_golden_dockerfile():
    proc = milabox("render", "bert", "--vendor", "amd")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (GOLDEN / "bert-rocm.Dockerfile").read_text()


def test_render_runtime_passes_hadolint(tmp_path):
    proc = milabox("render", "bert", "--vendor", "xpu", "--runtime")
    assert proc.returncode == 0 and proc.stdout.startswith("# The xpu runtime image")
    (tmp_path / "Dockerfile").write_text(proc.stdout)
    lint = subprocess.run([str(Path(sys.executable).parent / "hadolint"), str(tmp_path / "Dockerfile")],
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout


@pytest.mark.engine
def test_doctor_reports_engine_and_vendors(engine):
    proc = milabox("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "engine" in proc.stdout and "Docker 20" in proc.stdout or "Docker " in proc.stdout
    for vendor in ("cpu", "cuda", "rocm", "xpu"):
        assert f"{vendor}: devices" in proc.stdout and f"{vendor}: telemetry" in proc.stdout
