"""Device selection in the apptainer and pyxis scripts, run by bash against FAKE srun, apptainer and python.

The fake srun does what Slurm does to a step's environment that matters here: it sets the vendor's variable
(``CUDA_VISIBLE_DEVICES``) to the step's GRES, whatever the job script exported (Slurm doc/html/gres.shtml,
"GPU Management"). The fake apptainer keeps only ``APPTAINERENV_*`` (``--cleanenv``); pyxis hands the step's
environment in, so under the fake srun its pyxis options are simply dropped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import planted_toml

from milabox.cluster.options import SlurmOptions
from milabox.cluster.scripts import render_script
from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import all_vendors

BENCH_TOML = planted_toml("device-selection benchmark", {"warmup": 1, "steps": 2, "batch_size": 4, "timeout_s": 60},
                          variants={"sel": "per_device", "sel-ddp": "all_devices"})

FAKE_SRUN = '''#!/bin/bash
# FAKE srun: Slurm gives the step its own GRES, overwriting what the job exported.
export CUDA_VISIBLE_DEVICES="$FAKE_STEP_GPUS" ROCR_VISIBLE_DEVICES="$FAKE_STEP_GPUS"
while [ "${1#--}" != "$1" ]; do shift; done
exec "$@"
'''
FAKE_APPTAINER = '''#!/bin/bash
# FAKE apptainer: `build` makes the file; `exec --cleanenv` runs the command with only APPTAINERENV_* (renamed).
if [ "$1" = build ]; then touch "$3"; exit 0; fi
shift
while [ "${1#--}" != "$1" ]; do case "$1" in --bind|--pwd) shift 2 ;; *) shift ;; esac; done
shift  # the image
env_args=()
while IFS='=' read -r key value; do
    env_args+=("${key#APPTAINERENV_}=$value")
done < <(env | grep '^APPTAINERENV_')
exec env -i PATH="$PATH" "${env_args[@]}" "$@"
'''
FAKE_PYTHON = '''#!/bin/bash
# FAKE python: says which devices the benchmark would see.
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset} ROCR_VISIBLE_DEVICES=${ROCR_VISIBLE_DEVICES-unset}"
'''


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmarks")
    (folder / "sel").mkdir()
    (folder / "sel" / "main.py").write_text("print('sel')\n")
    (folder / "sel" / "benchmark.toml").write_text(BENCH_TOML)
    return all_benchmarks(folder)


def _run_script(tmp_path: Path, text: str, job_gpus: str, step_gpus: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("apptainer", FAKE_APPTAINER), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "2",
           "CUDA_VISIBLE_DEVICES": job_gpus, "ROCR_VISIBLE_DEVICES": job_gpus, "FAKE_STEP_GPUS": step_gpus}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)


def _render(benches, bench, vendor, runtime, run_dir, **options):
    opts = SlurmOptions(run_dir=run_dir, milabox=("milabox",), runtime=runtime, gpus_per_node=2,
                        registry="registry.example:5000/milabox", **options)
    return render_script(benches[bench], all_vendors()[vendor], opts).text


@pytest.mark.parametrize(("runtime", "vendor", "var"), [("pyxis", "cuda", "CUDA_VISIBLE_DEVICES"),
                                                       ("apptainer", "cuda", "CUDA_VISIBLE_DEVICES"),
                                                       ("apptainer", "rocm", "ROCR_VISIBLE_DEVICES")])
def test_each_per_device_attempt_sees_its_own_gpu_on_fake_slurm(benches, tmp_path, runtime, vendor, var):
    run_dir = tmp_path / "run"
    proc = _run_script(tmp_path, _render(benches, "sel", vendor, runtime, run_dir), "0,1", "0,1")
    assert proc.returncode == 0, proc.stderr
    for device in ("0", "1"):  # without the selection inside the step, both would see Slurm's "0,1"
        assert f"{var}={device}" in (run_dir / "sel" / f"r0-d{device}" / "container.log").read_text().split()


@pytest.mark.parametrize("runtime", ["pyxis", "apptainer"])
def test_an_all_devices_attempt_keeps_the_steps_allocation_on_fake_slurm(benches, tmp_path, runtime):
    run_dir = tmp_path / "run"
    proc = _run_script(tmp_path, _render(benches, "sel-ddp", "cuda", runtime, run_dir), "2,3", "2,3")
    assert proc.returncode == 0, proc.stderr
    # apptainer's --cleanenv would drop it: the step forwards its own value as APPTAINERENV_CUDA_VISIBLE_DEVICES.
    assert "CUDA_VISIBLE_DEVICES=2,3" in (run_dir / "sel-ddp" / "r0-dall" / "container.log").read_text().split()


def test_apptainer_forwards_the_selection_and_rocm_has_no_rocm_flag(benches, tmp_path):
    text = _render(benches, "sel", "rocm", "apptainer", tmp_path)
    assert 'export APPTAINERENV_ROCR_VISIBLE_DEVICES="$d"' in text
    assert "--rocm" not in text and "--rocm" not in all_vendors()["rocm"].apptainer_flags
    assert "--nv" in _render(benches, "sel", "cuda", "apptainer", tmp_path)


def test_cuda_scripts_number_gpus_by_pci_bus_id(benches, tmp_path):
    assert "export CUDA_DEVICE_ORDER=PCI_BUS_ID" in _render(benches, "sel", "cuda", "pyxis", tmp_path)
    assert "export APPTAINERENV_CUDA_DEVICE_ORDER=PCI_BUS_ID" in _render(benches, "sel", "cuda", "apptainer", tmp_path)


@pytest.mark.parametrize("runtime", ["pyxis", "apptainer"])
def test_a_cpuset_vendor_runs_one_attempt_and_reads_no_variable(benches, tmp_path, runtime):
    assert all_vendors()["cpu"].device_selection == "cpuset"
    text = _render(benches, "sel", "cpu", runtime, tmp_path)
    assert "printenv" not in text and "MILABOX_SLURM_DEVICE" not in text
    assert text.rstrip().endswith("attempt r0-dall")
