"""Shipping for real: a bundle loads into a second, fresh Docker engine and runs there; results come back;
images go through a real registry (Debian's docker-registry on 127.0.0.1) and runs then name them by digest."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import CPU, _free_port, _Quiet, milabox

from milabox import __version__
from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.engine.docker import Engine
from milabox.errors import EngineError
from milabox.images.base import resolve_base
from milabox.images.build import build
from milabox.images.naming import benchmark_tag, runtime_tag
from milabox.images.sources import discover

pytestmark = pytest.mark.engine


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM and wait (dockerd unmounts its layers on a clean stop); SIGKILL only if it will not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _unmount_under(root: Path) -> None:
    """Unmount anything a killed dockerd left mounted under its folder (deepest first) so it can be deleted."""
    with open("/proc/mounts") as fh:
        points = [line.split()[1] for line in fh if line.split()[1].startswith(str(root))]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@pytest.fixture(scope="module")
def second_engine():
    """A second dockerd with its own data root, exec root, pid file and socket: a fresh engine with no images."""
    if os.geteuid() != 0:
        pytest.fail("starting a second Docker engine needs root (dockerd)")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.fail("dockerd is not installed; `make engine` installs it")
    # Its data root in memory where there is room (deleting GBs of layers from a busy disk takes half a minute);
    # a short path either way: containerd's socket path has a length limit.
    shm = Path("/dev/shm")
    in_memory = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 8 * 2**30
    root = Path(tempfile.mkdtemp(prefix="mbx-", dir=shm if in_memory else "/tmp"))
    (root / "daemon.json").write_text("{}")  # not the host's /etc/docker/daemon.json
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [dockerd, "--config-file", str(root / "daemon.json"), "--storage-driver", "overlay2", "--iptables=false",
         "--bridge=none", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "--host", f"unix://{sock}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        engine = None
        for _ in range(120):
            if proc.poll() is not None:
                break
            try:
                engine = Engine(f"unix://{sock}")
                break
            except EngineError:
                time.sleep(0.25)
        if engine is None:
            pytest.fail(f"the second dockerd did not answer: {(root / 'dockerd.log').read_text()[-2000:]}")
        yield engine
    finally:
        _stop(proc)
        log.close()
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def matmul_images(engine, tmp_path_factory):
    """The CPU runtime and matmul images (built here, from cache when `make demo` or another test built them)."""
    results = build(engine, select(["matmul"], all_benchmarks()), CPU, discover(), _Quiet(),
                    tmp_path_factory.mktemp("logs"))
    return {r.name: r for r in results}


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_bundle_loads_into_a_fresh_engine_runs_there_and_results_come_back(engine, matmul_images, second_engine,
                                                                           tmp_path):
    bundle = tmp_path / "matmul-cpu.milabox.tar"
    try:
        _bundle_round_trip(engine, second_engine, bundle, tmp_path)
    finally:
        bundle.unlink(missing_ok=True)  # GBs: not left for pytest's kept temp folders


def _bundle_round_trip(engine, second_engine, bundle, tmp_path):
    host = second_engine.base_url
    # --no-dependencies keeps it fast; the milabox wheel is always carried.
    made = _ok(milabox("bundle", "matmul-fp32", "--vendor", "cpu", "-o", str(bundle), "--no-dependencies"))
    assert "milabox load matmul-cpu.milabox.tar && milabox run --vendor cpu matmul-fp32" in made.stdout
    wheel = f"milabox-{__version__}-py3-none-any.whl"
    with tarfile.open(bundle) as tar:  # a plain tar: README, manifest, the milabox wheel, the images, the checksums
        assert tar.getnames() == ["README.txt", "bundle.json", wheel, "images.tar", "SHA256SUMS"]
        manifest = json.load(tar.extractfile("bundle.json"))
        images_offset = tar.getmember("images.tar").offset_data
        tar.extract(wheel, tmp_path, filter="data")
    assert manifest["wheel"]["name"] == wheel
    _installs_offline_and_answers(tmp_path / wheel, tmp_path)
    tags = [runtime_tag(CPU), benchmark_tag("matmul", CPU)]
    assert [i["tag"] for i in manifest["images"]] == tags
    assert [i["id"] for i in manifest["images"]] == [engine.image(t).id for t in tags]
    assert manifest["vendor"] == "cpu" and manifest["benchmarks"] == ["matmul-fp32"]

    # One byte changed in the middle of the images: refused in one line, nothing reaches the fresh engine.
    middle = images_offset + (bundle.stat().st_size - images_offset) // 2
    _flip(bundle, middle)
    refused = milabox("load", str(bundle), docker_host=host)
    assert refused.returncode == 2, refused.stderr
    error = [ln for ln in refused.stderr.splitlines() if ln.startswith("milabox:")]
    assert len(error) == 1 and "part 'images.tar' does not match its checksum" in error[0], refused.stderr
    assert "expected" in error[0] and "got" in error[0]
    assert second_engine.client.images.list(all=True) == []  # not one image, layer or tag
    _flip(bundle, middle)  # restored

    loaded = _ok(milabox("load", str(bundle), docker_host=host))
    assert f"checked {wheel} and 0 dependency wheels" in loaded.stdout
    assert [second_engine.image(t).id for t in tags] == [i["id"] for i in manifest["images"]]

    there = tmp_path / "there" / "vendor-run"
    _ok(milabox("run", "matmul-fp32", "--vendor", "cpu", "--run-dir", str(there), "--format", "json",
                docker_host=host))
    record = json.loads((there / "matmul-fp32" / "r0-dall" / "record.json").read_text())
    assert record["status"] == "ok" and record["image_id"] == manifest["images"][1]["id"], record

    pack = tmp_path / "results.tar"
    _ok(milabox("results", "pack", str(there), "-o", str(pack)))
    shutil.rmtree(tmp_path / "there")  # what comes back is only the pack
    _ok(milabox("results", "import", str(pack), "--into", str(tmp_path / "here")))
    report = json.loads(_ok(milabox("report", str(tmp_path / "here" / "vendor-run"), "--format", "json")).stdout)
    row = report["benchmarks"][0]
    assert row["name"] == "matmul-fp32" and row["n"] == 1 and row["perf"] == pytest.approx(record["rate"])
    compared = _ok(milabox("compare", str(tmp_path / "here" / "vendor-run"), str(tmp_path / "here" / "vendor-run")))
    assert "matmul-fp32" in compared.stdout


def _installs_offline_and_answers(wheel: Path, tmp_path: Path) -> None:
    """The bundle's wheel into a fresh venv, offline; milabox's dependencies come from this venv's site-packages
    (a plain path line: its editable milabox finder is not run, so the venv's milabox is the wheel's)."""
    venv = tmp_path / "fresh-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "host-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _ok(subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                        "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, check=False))
    answer = _ok(subprocess.run([str(venv / "bin" / "milabox"), "--version"], capture_output=True, text=True,
                                check=False, cwd=tmp_path))
    assert __version__ in answer.stdout
    where = _ok(subprocess.run([str(venv / "bin" / "python"), "-c", "import milabox; print(milabox.__file__)"],
                               capture_output=True, text=True, check=False, cwd=tmp_path))
    assert where.stdout.startswith(str(site)), where.stdout


# ---- registry ------------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry serving on a free loopback port, storing in a temp folder."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed; `make registry-tools` installs it (make test does)")
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
                      f"{tmp_path / 'registry-data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    with open(tmp_path / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"docker-registry did not answer: {(tmp_path / 'registry.log').read_text()[-2000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc, 10)


PROBE = """#!/bin/sh
# A benchmark small enough to push in seconds: it reports a rate the way milabox_runtime does.
printf '{"event":"summary","time":0,"rate":42.5,"unit":"items/s","items":85,"seconds":2,"steps":2,"warmup":0}\\n' \\
  > "$MILABOX_RESULTS/events.jsonl"
"""


@pytest.fixture
def probe_vendor(engine, vendors_copy, benchmarks_copy, tmp_path):
    """A test vendor whose runtime is the CPU base image and a one-script benchmark, so a push takes seconds."""
    text = (vendors_copy / "cpu.toml").read_text()
    (vendors_copy / "shiptest.toml").write_text(text.replace('name = "cpu"', 'name = "shiptest"')
                                                .replace('maker = "cpu"', 'maker = "shiptest"'))
    vendor = get_vendor("shiptest")
    (benchmarks_copy / "shipprobe").mkdir()
    (benchmarks_copy / "shipprobe" / "main.py").write_text("")
    (benchmarks_copy / "shipprobe" / "benchmark.toml").write_text(
        'description = "registry probe"\nfamily = "test"\nunit = "items/s"\n[sizes.smoke]\n[sizes.full]\n')
    base = resolve_base(engine, CPU, pull=False)
    made = []
    for tag, dockerfile in ((runtime_tag(vendor), f"FROM {base}\nLABEL milabox.test=shipprobe\n"),
                            (benchmark_tag("shipprobe", vendor),
                             f"FROM {runtime_tag(vendor)}\nCOPY probe.sh /probe.sh\nCMD [\"sh\", \"/probe.sh\"]\n")):
        context = tmp_path / f"ctx{len(made)}"
        context.mkdir()
        (context / "Dockerfile").write_text(dockerfile)
        (context / "probe.sh").write_text(PROBE)
        made.append(engine.build(context, tag, labels={}, network_mode="none", on_line=lambda line: None,
                                 on_step=lambda *a: None))
    yield vendor
    for image_id in reversed(made):  # every tag and digest reference of the test's own images
        engine.remove_image(image_id)


def _registry_digest(registry: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def test_push_pull_through_a_real_registry_and_runs_name_images_by_digest(engine, registry, probe_vendor, tmp_path):
    tag = benchmark_tag("shipprobe", probe_vendor)
    image_id = engine.image(tag).id
    pushed = json.loads(_ok(milabox("push", "shipprobe", "--vendor", "shiptest", "--registry",
                                    f"{registry}/lab", "--format", "json")).stdout)
    assert [p["local"] for p in pushed] == [runtime_tag(probe_vendor), tag]
    probe = pushed[1]
    repository = f"{registry}/lab/shipprobe"
    assert probe["remote"] == f"{repository}:shiptest-{tag.rsplit('-', 1)[1]}" and probe["id"] == image_id
    digest = _registry_digest(registry, "lab/shipprobe", probe["remote"].rsplit(":", 1)[1])
    assert probe["digest_ref"] == f"{repository}@{digest}"  # what the registry itself serves

    # Gone from this engine (every name of it), then pulled back: same image, same digest.
    for ref in (tag, probe["remote"], probe["digest_ref"]):
        engine.remove_image(ref)
    assert engine.image(image_id) is None
    pulled = json.loads(_ok(milabox("pull", "shipprobe", "--vendor", "shiptest", "--registry",
                                    f"{registry}/lab", "--format", "json")).stdout)
    assert pulled[1]["digest_ref"] == probe["digest_ref"] and engine.image(tag).id == image_id

    run_dir = tmp_path / "run"
    _ok(milabox("run", "shipprobe", "--vendor", "shiptest", "--run-dir", str(run_dir)))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["images"]["shipprobe"] == {"tag": tag, "id": image_id, "ref": probe["digest_ref"]}
    record = json.loads((run_dir / "shipprobe" / "r0-dall" / "record.json").read_text())
    assert record["status"] == "ok" and record["rate"] == 42.5
    assert record["image"] == probe["digest_ref"] and record["container_request"]["image"] == probe["digest_ref"]


def test_pull_of_an_image_never_pushed_says_what_the_registry_said(engine, registry, probe_vendor):
    proc = milabox("pull", "shipprobe", "--vendor", "shiptest", "--registry", f"{registry}/nowhere")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("milabox: error: pull of ") and "nowhere/runtime" in lines[-1], proc.stderr


def test_bundle_of_images_not_built_writes_nothing(engine, tmp_path):
    proc = milabox("bundle", "matmul", "--vendor", "cuda", "-o", str(tmp_path / "b.tar"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "milabox/runtime:cuda-" in proc.stderr and "is not built; run `milabox build --vendor cuda`" in proc.stderr
    assert list(tmp_path.iterdir()) == []
