"""The built wheel is milabox, whole: installed outside the checkout it finds its templates, vendor files and suite.

Network-free: the wheel is built with the running interpreter's setuptools (no build isolation) from a copy of the
sources, and installed with ``--no-deps --no-index`` into a fresh venv. Its dependencies are not installed again (that
needs an index): a ``.pth`` file makes the running interpreter's site-packages visible *after* the venv's own, so
``milabox`` itself can only come from the wheel (a ``.pth`` line adds a folder without running the ``.pth`` files in it,
so an editable install of the checkout there stays inert) — checked by where ``milabox.__file__`` is.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import GOLDEN, PROJECT

PACKAGE = PROJECT / "milabox"


#: Variables that would point the installed milabox back at the checkout or at other folders.
_UNSET = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "MILABOX_SUITE", "MILABOX_VENDORS", "MILABOX_BENCHMARKS")


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 0, f"{command}: {proc.stdout}\n{proc.stderr}"
    return proc


def _expected_data() -> set[str]:
    """The checkout's package data, as wheel member names."""
    globs = ("images/templates/*.j2", "cluster/templates/*.j2", "vendors/*.toml", "vendors/locks/*",
             "suite/*/benchmark.toml", "suite/*/*.py")
    return {f"milabox/{p.relative_to(PACKAGE).as_posix()}" for g in globs for p in PACKAGE.glob(g) if p.is_file()}


def _dependency_dirs() -> list[str]:
    """The running interpreter's site-packages folders, where milabox's dependencies are installed."""
    paths = sysconfig.get_paths()
    found = [paths["purelib"], paths["platlib"], *site.getsitepackages()]
    return list(dict.fromkeys(p for p in found if Path(p).is_dir()))


def _extra_benchmark(parent: Path, name: str) -> Path:
    """A benchmark folder NAME in PARENT: the bundled matmul's definition and code, its variants renamed."""
    folder = parent / name
    shutil.copytree(PACKAGE / "suite" / "matmul", folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = folder / "benchmark.toml"
    toml.write_text(toml.read_text().replace("[variants.matmul-", f"[variants.{name}-"))
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    top = tmp_path_factory.mktemp("packaging")
    src = top / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT / name, src / name)
    for name in ("milabox", "milabox_runtime"):  # __pycache__ folders included: the wheel must leave them out
        shutil.copytree(PROJECT / name, src / name, ignore=shutil.ignore_patterns("*.egg-info"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", top / "dist", src, cwd=top)
    (built,) = (top / "dist").glob("milabox-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A venv holding the installed wheel; ``env`` and ``cwd`` run its ``milabox`` away from the checkout."""
    top = tmp_path_factory.mktemp("venv")
    venv = top / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=top)
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        cwd=top).stdout.strip())
    (purelib / "zz_milabox_test_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=top)
    elsewhere = top / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {"milabox": venv / "bin" / "milabox", "python": python, "purelib": purelib, "env": env, "cwd": elsewhere}


def _milabox(installed: dict, *args: str | Path) -> subprocess.CompletedProcess:
    return _run(installed["milabox"], *args, cwd=installed["cwd"], env=installed["env"])


def test_wheel_holds_every_template_vendor_file_and_benchmark_and_no_cache(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _expected_data()
    assert {"milabox/images/templates/benchmark.Dockerfile.j2", "milabox/vendors/cpu.toml",
            "milabox/suite/matmul/benchmark.toml", "milabox/suite/matmul/main.py"} <= expected
    assert expected - names == set()
    assert "milabox_runtime/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("tests/")]


def test_installed_milabox_is_the_wheel_not_the_checkout(installed):
    proc = _run(installed["python"], "-c", "import milabox, milabox_runtime\n"
                "from milabox.resources import package_path\n"
                "print(milabox.__file__); print(milabox_runtime.__file__); print(package_path('suite'))",
                cwd=installed["cwd"], env=installed["env"])
    for line in proc.stdout.splitlines():
        path = Path(line).resolve()
        assert path.is_relative_to(installed["purelib"].resolve()), line
        assert not path.is_relative_to(PROJECT) and not path.is_relative_to(Path("/work/main")), line


def test_installed_version(installed):
    from milabox import __version__
    assert _milabox(installed, "--version").stdout.strip() == f"milabox, version {__version__}"


def test_installed_list_has_every_bundled_benchmark(installed):
    from milabox.definitions.benchmarks import all_benchmarks
    rows = json.loads(_milabox(installed, "list", "--format", "json").stdout)
    assert [r["name"] for r in rows] == list(all_benchmarks(PACKAGE / "suite"))


def test_installed_render_finds_the_templates(installed):
    dockerfile = _milabox(installed, "render", "bert-fp32", "--vendor", "rocm").stdout
    assert dockerfile == (GOLDEN / "bert-rocm.Dockerfile").read_text()


def test_installed_benchmarks_dir_adds_a_benchmark(installed, tmp_path):
    _extra_benchmark(tmp_path, "mymatmul")
    rows = json.loads(_milabox(installed, "--benchmarks-dir", tmp_path, "list", "--format", "json").stdout)
    names = [r["name"] for r in rows]
    assert {"mymatmul-fp32", "mymatmul-bf16", "matmul-fp32", "bert-fp32"} <= set(names)
    assert names[-4:] == ["mymatmul-fp32", "mymatmul-tf32", "mymatmul-fp16", "mymatmul-bf16"]
