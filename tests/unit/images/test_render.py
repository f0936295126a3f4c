"""Rendered Dockerfiles: pinned by golden files, and every vendor x benchmark passes hadolint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from helpers import GOLDEN

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import all_vendors
from milabox.errors import ConfigError
from milabox.images import render
from milabox.images.naming import groups_of
from milabox.images.sources import PackageSources

VENDORS = all_vendors()


GROUPS = groups_of(list(all_benchmarks().values()))


# A restricted network as milabox sees one: an internal index, a proxy CA, a local torch wheel.
SOURCES = PackageSources(index_url="https://pypi.example.internal/simple", ca_bundle=Path("/etc/ssl/ca.crt"))


def _renderings() -> dict[str, str]:
    out = {}
    for vendor in VENDORS.values():
        out[f"runtime-{vendor.name}.Dockerfile"] = render.render_runtime(vendor, sources=SOURCES)
        out[f"runtime-{vendor.name}-wheelhouse.Dockerfile"] = render.render_runtime(
            vendor, base_image="local/base:1", sources=PackageSources(), torch_wheels=["torch.whl"])
        if not vendor.framework_excluded("jax"):  # a torch wheel must play no part in a JAX runtime
            out[f"runtime-jax-{vendor.name}.Dockerfile"] = render.render_runtime(
                vendor, sources=SOURCES, torch_wheels=["torch.whl"], framework="jax")
        for group, benches in GROUPS.items():
            out[f"{group}-{vendor.name}.Dockerfile"] = render.render_benchmark(benches, vendor)
    return out


RENDERINGS = _renderings()


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_rendering_matches_golden_file(name):
    """Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended template change (then review the diff)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(RENDERINGS[name])
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1"
    assert RENDERINGS[name] == path.read_text()


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_rendering_passes_hadolint(name, tmp_path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    path = tmp_path / "Dockerfile"
    path.write_text(RENDERINGS[name])
    proc = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_golden_file_is_stale():
    assert {p.name for p in GOLDEN.glob("*.Dockerfile")} == set(RENDERINGS)


def test_benchmark_image_adds_only_code_on_the_runtime_image():
    text = RENDERINGS["bert-rocm.Dockerfile"]
    assert "FROM milabox/runtime:rocm-" in text and "COPY benchmark/" in text
    assert "pip install" not in text  # dependencies come from the runtime image's joint lock


def test_runtime_image_installs_the_hashed_lock_from_the_vendor_index_or_a_wheelhouse():
    cpu = RENDERINGS["runtime-cpu.Dockerfile"]
    assert "--require-hashes -r /opt/milabox/requirements.lock" in cpu
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in cpu
    with_wheel = RENDERINGS["runtime-cpu-wheelhouse.Dockerfile"]
    assert "--find-links /opt/milabox/wheelhouse" in with_wheel and "COPY wheelhouse/" in with_wheel
    assert "FROM local/base:1" in with_wheel and "ca-bundle.crt" not in with_wheel
    assert "COPY ca-bundle.crt" in RENDERINGS["runtime-cpu.Dockerfile"]


def test_templates_use_strict_undefined(monkeypatch, tmp_path):
    (tmp_path / "runtime.Dockerfile.j2").write_text("FROM {{ no_such_thing }}\n")
    monkeypatch.setattr(render, "TEMPLATES_DIR", tmp_path)
    with pytest.raises(ConfigError, match="no_such_thing"):
        render.render_runtime(VENDORS["cpu"])
    assert render._env().undefined is jinja2.StrictUndefined
