"""The command line as a user meets it: one clear line and a non-zero exit for every bad input, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GOLDEN, assert_one_line_error, milabox

from milabox.resources import package_path

SUITE = package_path("suite")  # the bundled suite of the milabox these tests run


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


def test_more_cpu_devices_than_cores_is_refused(tmp_path):
    # CPU devices are disjoint core sets (one per NUMA node, else the cores split evenly): 64 cannot be made here.
    devices = ",".join(str(i) for i in range(64))
    proc = milabox("run", "matmul-fp32", "--devices", devices, "--run-dir", str(tmp_path / "r"))
    if "no Docker engine" in proc.stderr:
        pytest.fail("needs the engine")
    assert_one_line_error(proc, "--devices", "cores to split")
    assert not (tmp_path / "r").exists()


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
    # Milabench's weights: bert-fp32 is a precision showcase there (weight 0), bert-tf32-fp16 the scored row.
    assert rows["bert-fp32"]["weight"] == 0.0 and rows["bert-tf32-fp16"]["weight"] == 1.0
    assert "nlp" in rows["bert-fp32"]["tags"]
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


def _extra_benchmark(parent: Path, name: str) -> Path:
    """A benchmark folder NAME in PARENT: the bundled matmul's definition and code, its variants renamed."""
    folder = parent / name
    shutil.copytree(SUITE / "matmul", folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = folder / "benchmark.toml"
    toml.write_text(toml.read_text().replace("[variants.matmul-", f"[variants.{name}-"))
    return folder


def _names(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [row["name"] for row in json.loads(proc.stdout)]


def test_milabox_benchmarks_path_list_adds_every_folder(tmp_path):
    _extra_benchmark(tmp_path / "a", "alpha")
    _extra_benchmark(tmp_path / "b", "beta")
    paths = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])
    names = _names(milabox("list", "--format", "json", env={"MILABOX_BENCHMARKS": paths}))
    assert {"matmul-fp32", "bert-fp32", "alpha-fp32", "alpha-bf16", "beta-fp32", "beta-bf16"} <= set(names)
    assert names.index("alpha-fp32") < names.index("beta-fp32")  # in the path list's order, after the bundled


def test_benchmark_folder_clashing_with_a_bundled_one_names_both_folders(tmp_path):
    clash = _extra_benchmark(tmp_path, "matmul")
    proc = milabox("list", env={"MILABOX_BENCHMARKS": str(tmp_path)})
    assert_one_line_error(proc, str(clash), str(SUITE), "'matmul'")
    assert proc.returncode == 2


def test_benchmarks_dir_option_adds_a_folder_for_every_command(tmp_path):
    _extra_benchmark(tmp_path / "env", "alpha")
    _extra_benchmark(tmp_path / "opt", "gamma")
    proc = milabox("--benchmarks-dir", str(tmp_path / "opt"), "list", "--format", "json",
                   env={"MILABOX_BENCHMARKS": str(tmp_path / "env")})
    names = _names(proc)
    assert names.index("alpha-fp32") < names.index("gamma-fp32")  # $MILABOX_BENCHMARKS first, then the option
    render = milabox("--benchmarks-dir", str(tmp_path / "opt"), "render", "gamma-fp32")
    assert render.returncode == 0 and "FROM " in render.stdout, render.stderr


def test_benchmarks_dir_that_is_missing_is_one_line(tmp_path):
    proc = milabox("--benchmarks-dir", str(tmp_path / "none"), "list")
    assert_one_line_error(proc, "--benchmarks-dir", str(tmp_path / "none"))
    assert proc.returncode == 2


def test_help_documents_benchmarks_dir_and_its_variable():
    proc = milabox("--help")
    assert proc.returncode == 0 and "--benchmarks-dir DIR" in proc.stdout
    assert "MILABOX_BENCHMARKS" in " ".join(proc.stdout.split())
