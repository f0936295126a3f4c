"""The uv command line `milabox lock` runs (uv itself is replaced by a recorder of its arguments)."""

from __future__ import annotations

import subprocess

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import get_vendor
from milabox.images import lock
from milabox.images.sources import PackageSources


def test_lock_resolves_with_best_match_across_indexes(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "locks_dir", lambda: tmp_path)
    seen: list[list[str]] = []

    def fake_uv(command, **kwargs):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(lock.subprocess, "run", fake_uv)
    vendor = get_vendor("cpu")
    lock.generate_lock(vendor, list(all_benchmarks().values()), PackageSources())
    command = seen[0]
    # An extra torch index must not shadow PyPI's newer numpy/jinja2/pillow: best match across indexes.
    assert command[command.index("--index-strategy") + 1] == "unsafe-best-match"
    assert "--generate-hashes" in command and command[command.index("--extra-index-url") + 1] == vendor.torch_index
    # CUDA's torch is PyPI's own (the cu130 build): no torch index at all, so the lock resolves from PyPI alone.
    lock.generate_lock(get_vendor("cuda"), list(all_benchmarks().values()), PackageSources())
    assert "--extra-index-url" not in seen[1] and "torch==2.13.0" in (tmp_path / "cuda.in").read_text()
