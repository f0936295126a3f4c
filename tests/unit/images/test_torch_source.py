"""Where the runtime image's torch comes from: the lock (``torch_source = "index"``) or the vendor's base image
(``"image"``: the lock leaves torch out, the build checks the image's torch version)."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import TORCH_SOURCES, get_vendor, load_vendor_file
from milabox.errors import ConfigError
from milabox.images import lock
from milabox.images.render import render_runtime
from milabox.images.sources import PackageSources

BENCHES = list(all_benchmarks().values())
ROCM = get_vendor("amd")


def test_the_shipped_vendors_use_each_source():
    assert {v: get_vendor(v).torch_source for v in ("cpu", "cuda", "rocm", "xpu")} == {
        "cpu": "index", "cuda": "index", "rocm": "image", "xpu": "image"}


def test_image_torch_rendering_installs_no_torch_and_checks_the_image_version():
    text = render_runtime(ROCM)
    install = text[text.index("RUN uv pip install"):text.index("pip freeze")]
    assert "--extra-index-url" not in install and "--find-links" not in install and "torch" not in install
    assert "--system-site-packages /opt/venv" in text
    check = next(line for line in text.splitlines() if "import importlib.util" in line)
    assert f"v.startswith('{ROCM.torch_version}')" in check and "sys.exit(0 if" in check
    assert f"needs {ROCM.torch_version} (torch_version in rocm.toml)" in check
    assert 'milabox.torch_source="image"' in text


def test_index_torch_rendering_is_unchanged_by_the_mode():
    cpu = get_vendor("cpu")
    text = render_runtime(cpu)
    assert f"--extra-index-url {cpu.torch_index} \\" in text and "import importlib.util" not in text
    # An empty torch_index (CUDA: PyPI's torch is the cu130 build) adds no index at all.
    cuda = render_runtime(get_vendor("cuda"))
    assert "--extra-index-url" not in cuda and "RUN python3 -m venv /opt/venv\n" in cuda


def test_image_torch_lock_inputs_leave_torch_out_and_the_hash_still_covers_its_version():
    inputs = lock.lock_inputs(ROCM, BENCHES)
    assert inputs and not any(line.startswith("torch==") for line in inputs)
    moved = replace(ROCM, torch_version="2.14.0")
    assert lock.lock_inputs(moved, BENCHES) == inputs
    assert lock.inputs_hash(lock._hashed_inputs(moved, inputs)) != lock.inputs_hash(lock._hashed_inputs(ROCM, inputs))


def test_image_torch_lock_checks_torch_then_locks_without_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "locks_dir", lambda: tmp_path)
    calls: list[tuple[list[str], str]] = []

    def fake_uv(command, cwd, **kwargs):
        calls.append((command, (cwd / command[3]).read_text()))
        pins = "accelerate==1.15.0 \\\n    --hash=sha256:aa\ntorch==2.13.0 \\\n    --hash=sha256:bb\n"
        if "--excludes" in command:
            assert (cwd / command[command.index("--excludes") + 1]).read_text() == "torch\n"
            constraints = (cwd / command[command.index("--constraints") + 1]).read_text()
            assert constraints == "accelerate==1.15.0\n"  # the versions checked against torch, torch itself not
            pins = "accelerate==1.15.0 \\\n    --hash=sha256:aa\n"
        return subprocess.CompletedProcess(command, 0, stdout=pins, stderr="")

    monkeypatch.setattr(lock.subprocess, "run", fake_uv)
    path = lock.generate_lock(ROCM, BENCHES, PackageSources(extra_index_urls=("https://extra.example/simple",)))
    (first, checked), (second, locked) = calls
    assert f"torch=={ROCM.torch_version}\n" in checked and "--excludes" not in first
    assert not any(line.startswith("torch==") for line in locked.splitlines()) and "--excludes" in second
    assert not any(ROCM.torch_index and ROCM.torch_index in c for c in (first, second))
    assert lock.read_pins(path) == {"accelerate": "1.15.0"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rocm.in", "rocm.txt"]  # no scratch files left
    assert lock.check_lock(ROCM, BENCHES) == path


@pytest.mark.parametrize("name", ["rocm", "xpu"])
def test_shipped_image_torch_locks_are_current_hashed_and_torch_free(name):
    vendor = get_vendor(name)
    path = lock.check_lock(vendor, BENCHES)
    pins = lock.read_pins(path)
    assert "torch" not in pins and not any(p.startswith(("nvidia-", "triton")) for p in pins)
    assert {"transformers", "peft", "accelerate"} <= set(pins) and "--hash=sha256:" in path.read_text()


def test_shipped_cuda_lock_pins_pypi_torch_with_its_cuda_13_runtime():
    cuda = get_vendor("cuda")
    path = lock.check_lock(cuda, BENCHES)
    pins = lock.read_pins(path)
    assert pins["torch"] == cuda.torch_version == "2.13.0"
    assert pins["nvidia-cuda-runtime"].startswith("13.0.")
    text = path.read_text()
    torch_block = text[text.index("torch==2.13.0"):].split("\n    # via", 1)[0]
    assert "--hash=sha256:" in torch_block


def test_unknown_torch_source_is_a_one_line_error(tmp_path):
    path = tmp_path / "rocm.toml"
    path.write_text(ROCM.path.read_text().replace('torch_source = "image"', 'torch_source = "conda"'))
    with pytest.raises(ConfigError) as e:
        load_vendor_file(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "torch_source" in message and "'conda'" in message
    assert all(s in message for s in TORCH_SOURCES)
