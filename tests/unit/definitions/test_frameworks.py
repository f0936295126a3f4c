"""The ``framework`` field of a benchmark group: its runtime image tag, its lock, the vendors without JAX."""

from __future__ import annotations

from dataclasses import replace

import pytest

from milabox.definitions.benchmarks import FRAMEWORKS, all_benchmarks, load_group
from milabox.definitions.vendors import JaxSupport, get_vendor, load_vendor_file
from milabox.errors import ConfigError
from milabox.images import lock
from milabox.images.catalog import catalog
from milabox.images.naming import images_for, runnable, runtime_tag
from milabox.images.render import render_benchmark, render_runtime

BENCHES = list(all_benchmarks().values())
ROWS = {b.name: b for b in BENCHES}
CPU, CUDA, ROCM, XPU = (get_vendor(v) for v in ("cpu", "cuda", "rocm", "xpu"))


def test_the_framework_defaults_to_torch_and_the_jax_rows_say_jax():
    assert FRAMEWORKS[0] == "torch"
    assert {ROWS[n].framework for n in ("brax", "ppo")} == {"jax"}
    assert ROWS["ppo-torch"].framework == "torch" and ROWS["ppo-torch"].weight == 0.0
    assert ROWS["ppo"].weight == 1.0 and ROWS["brax"].weight == 1.0


def _group(tmp_path, extra: str, variant: str = ""):
    folder = tmp_path / f"g{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "main.py").write_text("")
    (folder / "benchmark.toml").write_text(
        f'description = "d"\nfamily = "f"\nunit = "u"\n{extra}\n[sizes.smoke]\n[sizes.full]\n{variant}')
    return load_group(folder)


def test_a_bad_framework_is_refused_and_a_variant_cannot_set_one(tmp_path):
    with pytest.raises(ConfigError, match="framework.*valid: torch, jax"):
        _group(tmp_path, 'framework = "tensorflow"')
    with pytest.raises(ConfigError, match="cannot be set per variant"):
        _group(tmp_path, "", '[variants.v]\nframework = "jax"\n')


def test_runtime_tags_differ_by_framework_and_a_jax_group_builds_from_its_runtime():
    assert runtime_tag(CPU) == "milabox/runtime:cpu-0.1.0"
    assert runtime_tag(CPU, "jax") == "milabox/runtime-jax:cpu-0.1.0"
    assert render_benchmark([ROWS["brax"]], CUDA).splitlines()[2] == "FROM milabox/runtime-jax:cuda-0.1.0"
    images, _ = images_for([ROWS["brax"], ROWS["ppo-torch"]], CPU)
    assert [i.name for i in images] == ["runtime", "runtime-jax", "brax", "ppo-torch"]
    assert [i.name for i in images_for([ROWS["ppo"]], CPU)[0]] == ["runtime-jax", "ppo"]


def test_vendors_without_jax_skip_jax_rows_saying_why():
    skipped = {}
    kept = runnable([ROWS["brax"], ROWS["ppo-torch"]], XPU, lambda b, why: skipped.setdefault(b.name, why))
    assert [b.name for b in kept] == ["ppo-torch"]
    assert skipped["brax"].startswith("vendor xpu has no jax runtime: ") and XPU.jax.excluded in skipped["brax"]
    assert "brax" in catalog([ROWS["brax"]], ROCM)["excluded"]
    with pytest.raises(ConfigError, match="no jax runtime"):
        lock.lock_inputs(ROCM, BENCHES, "jax")


def test_jax_lock_inputs_are_the_vendor_pin_and_the_jax_rows_requirements_only():
    inputs = lock.lock_inputs(CUDA, BENCHES, "jax")
    assert inputs[0] == "jax[cuda13]==0.9.2" and "brax==0.14.2" in inputs
    assert not any(i.startswith("torch") for i in inputs)
    assert not any(i.startswith("brax") for i in lock.lock_inputs(CPU, BENCHES))  # the torch lock has none
    assert lock.lock_path(CPU, "jax").name == "cpu-jax.txt" and lock.lock_path(CPU).name == "cpu.txt"
    for vendor in (CPU, CUDA):
        assert lock.check_lock(vendor, BENCHES, "jax") == lock.lock_path(vendor, "jax")
    moved = replace(CPU, jax=JaxSupport(requirement="jax==0.9.1"))
    with pytest.raises(ConfigError, match="out of date.*--framework jax"):
        lock.check_lock(moved, BENCHES, "jax")


def test_the_jax_runtime_uses_its_own_lock_and_no_torch_wheel_or_index():
    text = render_runtime(CPU, torch_wheels=["torch.whl"], framework="jax")
    assert "locks/cpu-jax.txt" in text and 'milabox.jax="0.9.2"' in text
    assert "torch" not in text.replace("torch_source", "")
    assert render_runtime(CPU) == render_runtime(CPU, framework="torch")


def test_a_jax_table_needs_exactly_one_exact_pin_or_a_reason(tmp_path):
    text = CPU.path.read_text().split("\n[jax]")[0]
    for table, message in (('[jax]\nrequirement = "jax>=0.9"\n', "exact pin"),
                           ('[jax]\nrequirement = "jax==0.9.2"\nexcluded = "x"\n', "exactly one"),
                           ('[jax]\n', "exactly one")):
        path = tmp_path / "cpu.toml"
        path.write_text(f"{text}\n{table}")
        with pytest.raises(ConfigError, match=message):
            load_vendor_file(path)
