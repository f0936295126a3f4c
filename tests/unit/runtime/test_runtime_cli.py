"""The image's entrypoint, ``python -m milabox_runtime``, run on the host with a planted benchmark and its catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import CPU, PROJECT

import milabox_runtime as mr
from milabox.definitions.benchmarks import load_group
from milabox.definitions.vendors import get_vendor
from milabox.images.catalog import catalog_json, docker_run_flags
from milabox_runtime.cli import CATALOG_ENV, CATALOG_NAME, RESULTS_MOUNT

TOML = """\
description = "A tiny planted benchmark"
family = "test"
unit = "items/s"

[sizes.smoke]
warmup = 1
steps = 3
max_seconds = 10
width = 4

[sizes.full]
warmup = 2
steps = 5
max_seconds = 10
width = 8

[variants.tiny-fp32]
description = "tiny, fp32"
precision = "fp32"

[variants.tiny-bf16]
description = "tiny, bf16"
precision = "bf16"
excluded_vendors = { cpu = "planted: not on CPUs" }
"""

# Emits the config it was handed, so a test sees exactly what the benchmark's main received.
MAIN = textwrap.dedent("""\
    import milabox_runtime as mr

    def bench(run):
        run.emit("config_seen", **run.config)
        for _ in run.steps(items=run.config["width"]):
            pass

    if __name__ == "__main__":
        mr.main(bench)
""")


@pytest.fixture
def image(tmp_path):
    """A planted group folder with its catalog (as the image holds it) and a results folder; returns a runner."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "benchmark.toml").write_text(TOML)
    (folder / "main.py").write_text(MAIN)
    benches = load_group(folder)

    def write(vendor):
        (folder / CATALOG_NAME).write_text(catalog_json(benches, vendor))

    write(CPU)
    results = tmp_path / "results"
    results.mkdir()

    def run(*args, env=None):
        base = {k: v for k, v in os.environ.items() if not k.startswith("MILABOX_")}
        full = {**base, "PYTHONPATH": str(PROJECT), CATALOG_ENV: str(folder / CATALOG_NAME),
                "MILABOX_RESULTS": str(results), "MILABOX_DEVICE": "cpu", **(env or {})}
        full = {k: v for k, v in full.items() if v is not None}
        return subprocess.run([sys.executable, "-m", "milabox_runtime", *args], capture_output=True, text=True,
                              env=full, cwd=tmp_path, timeout=60, check=False)

    run.benches, run.results, run.write = {b.name: b for b in benches}, results, write
    return run


def events(folder):
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def test_no_command_prints_what_the_image_holds_and_the_vendors_flags(image):
    proc = image()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "tiny-fp32" in out and "not on cpu: tiny-bf16 (planted: not on CPUs)" in out
    assert "Sizes: smoke, full (default smoke)" in out
    line = next(x for x in out.splitlines() if "docker run" in x and " run tiny-fp32" in x)
    assert line.split().count("--network") == 1 and "--network none" in line
    assert '--user "$(id -u):$(id -g)"' in line and f'"type=bind,source=$PWD/results,target={RESULTS_MOUNT}"' in line
    assert "milabox/tiny:cpu-" in line
    assert image("help").stdout == out


def test_help_carries_the_vendors_passthrough_from_its_data(image):
    rocm = get_vendor("rocm")
    image.write(rocm)
    out = image().stdout
    pt = rocm.passthrough
    for device in pt.devices:
        assert f"--device {device}:{device}:rwm" in out
    assert f"--ipc {pt.ipc_mode}" in out and f"--shm-size {pt.shm_size}" in out
    assert f"--group-add {pt.group_add[0]}" in out and f"--security-opt {pt.security_opt[0]}" in out
    assert f"--env {rocm.device_env}=N" in out
    assert "--gpus all" in " ".join(docker_run_flags(get_vendor("cuda")))


def test_list_shows_each_row_and_each_sizes_full_config(image):
    proc = image("list")
    assert proc.returncode == 0, proc.stderr
    smoke = image.benches["tiny-fp32"].config("smoke")
    assert f"    smoke: {json.dumps(smoke, sort_keys=True)}" in proc.stdout.splitlines()
    assert "tiny-bf16" not in proc.stdout


def test_run_hands_the_benchmark_the_hosts_config_and_writes_events(image):
    proc = image("run", "tiny-fp32", "--size", "full", "--set", "steps=2", "--set", "seed=7")
    assert proc.returncode == 0, proc.stderr
    evs = events(image.results)
    (seen,) = [e for e in evs if e["event"] == "config_seen"]
    # Run.config is the loop defaults under the handed config: what the host would hand, plus the two --set.
    expected = {**mr.LOOP_DEFAULTS, **image.benches["tiny-fp32"].config("full"), "steps": 2, "seed": 7}
    assert {k: v for k, v in seen.items() if k not in ("event", "time")} == expected
    rates = [e for e in evs if e["event"] == "rate"]
    assert len(rates) == 2 and all(r["value"] > 0 and r["items"] == 8 for r in rates)
    assert evs[0]["event"] == "start" and evs[0]["benchmark"] == "tiny-fp32" and evs[0]["size"] == "full"
    assert evs[-1] == {**evs[-1], "event": "end", "status": "ok"}


def test_run_defaults_to_the_first_size(image):
    assert image("run", "tiny-fp32").returncode == 0
    assert events(image.results)[0]["size"] == "smoke"


def test_with_the_hosts_config_and_no_command_it_runs_that_config(image):
    config = {**image.benches["tiny-fp32"].config("smoke"), "steps": 1}
    proc = image(env={"MILABOX_CONFIG": json.dumps(config)})
    assert proc.returncode == 0, proc.stderr
    assert [e["event"] for e in events(image.results)].count("rate") == 1


@pytest.mark.parametrize(("args", "env", "fragment"), [
    (["run", "nope"], {}, "unknown benchmark 'nope'; this image holds: tiny-fp32"),
    (["run", "tiny-bf16"], {}, "tiny-bf16 does not run on cpu: planted: not on CPUs"),
    (["run", "tiny-fp32", "--size", "huge"], {}, "--size huge: unknown size; valid: "),
    (["run", "tiny-fp32", "--set", "steps"], {}, "expected KEY=VALUE"),
    (["run", "tiny-fp32", "--set", "steps=many"], {}, "steps is 3 in this size's config"),
    (["run", "tiny-fp32", "--set", "precision=fp16"], {}, "--set precision: names the row"),
    (["run", "tiny-fp32", "--set", "steps=0"], {}, "config 'steps' must be >= 1"),
    (["run", "tiny-fp32", "--set", "max_seconds=NaN"], {}, "not a finite number"),
    (["run", "tiny-fp32"], {"MILABOX_RESULTS": None}, f"{RESULTS_MOUNT} is not a mount point"),
    (["run", "tiny-fp32"], {"MILABOX_RESULTS": "/proc/version"}, "is not a folder"),
    (["list"], {CATALOG_ENV: None}, f"{CATALOG_ENV} is not set"),
    (["frobnicate"], {}, "invalid choice: 'frobnicate'"),
])
def test_a_bad_input_is_one_line_and_exit_2(image, args, env, fragment):
    assert not os.path.ismount(RESULTS_MOUNT)  # the host has no /results mount: the image's default is refused
    proc = image(*args, env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("milabox_runtime: error: "), proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (image.results / "events.jsonl").exists()


def test_config_value_reads_one_setting_and_leaves_a_bad_config_to_the_run():
    from milabox_runtime.distributed import config_value
    assert config_value("ddp", False, {"MILABOX_CONFIG": '{"ddp": true}'}) is True
    assert config_value("parallel", "none", {"MILABOX_CONFIG": '{"ddp": true}'}) == "none"
    assert config_value("ddp", False, {}) is False
    assert config_value("ddp", False, {"MILABOX_CONFIG": "{not json"}) is False
    assert config_value("ddp", False, {"MILABOX_CONFIG": "[1, 2]"}) is False
