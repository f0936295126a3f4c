"""Vendor and benchmark definition files: loading, validation messages, name resolution."""

from __future__ import annotations

import pytest

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import all_vendors, get_vendor
from milabox.errors import ConfigError, UnknownBenchmark, UnknownVendor


def test_every_vendor_loads_with_its_passthrough():
    vendors = all_vendors()
    assert set(vendors) == {"cpu", "cuda", "rocm", "xpu"}
    assert vendors["cuda"].passthrough.gpu_request and vendors["cuda"].device_selection == "device_requests"
    assert vendors["rocm"].passthrough.devices == ("/dev/kfd", "/dev/dri")
    assert vendors["rocm"].device_env == "ROCR_VISIBLE_DEVICES"
    assert vendors["xpu"].device_env == "ZE_AFFINITY_MASK"
    assert vendors["cpu"].local_base is not None and vendors["cpu"].device_selection == "cpuset"


@pytest.mark.parametrize(("name", "platform"), [("nvidia", "cuda"), ("AMD", "rocm"), ("intel", "xpu"),
                                                ("cuda", "cuda"), ("cpu", "cpu")])
def test_vendor_by_platform_or_maker(name, platform):
    assert get_vendor(name).name == platform


def test_unknown_vendor_lists_valid_names():
    with pytest.raises(UnknownVendor, match=r"'gaudi'.*cuda \(nvidia\).*rocm \(amd\).*xpu \(intel\)"):
        get_vendor("gaudi")


def test_vendor_file_with_bad_field_names_file_field_and_valid_values(vendors_copy):
    path = vendors_copy / "rocm.toml"
    path.write_text(path.read_text().replace('device_selection = "env"', 'device_selection = "magic"'))
    with pytest.raises(ConfigError) as err:
        get_vendor("rocm")
    msg = str(err.value)
    assert str(path) in msg and "device_selection" in msg and "device_requests" in msg and "\n" not in msg


def test_vendor_file_with_unknown_field(vendors_copy):
    path = vendors_copy / "xpu.toml"
    path.write_text(path.read_text().replace("[passthrough]", "base_imag = 'typo'\n[passthrough]"))
    with pytest.raises(ConfigError, match=r"xpu.toml: field 'base_imag' is not a known field"):
        all_vendors()


def test_vendor_file_not_toml(vendors_copy):
    (vendors_copy / "cpu.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match=r"cpu.toml: not valid TOML"):
        all_vendors()


def test_benchmarks_load_as_variant_rows():
    benches = all_benchmarks()
    assert {"matmul-fp32", "matmul-bf16", "bert-fp32"} <= set(benches)
    bert = benches["bert-fp32"]
    assert bert.group == "bert" and bert.unit == "items/s" and bert.precision == "fp32"
    config = bert.config("smoke")
    assert config["benchmark"] == "bert-fp32" and config["size"] == "smoke" and config["steps"] > 0
    # a variant's size override is merged over the group's, not replacing it
    assert benches["matmul-bf16"].sizes["smoke"]["n"] < benches["matmul-fp32"].sizes["smoke"]["n"]
    assert benches["matmul-bf16"].sizes["smoke"]["max_seconds"] == benches["matmul-fp32"].sizes["smoke"]["max_seconds"]
    assert not benches["matmul-tf32"].supports("cpu") and benches["matmul-tf32"].supports("cuda")


def test_select_by_group_name_and_tag():
    benches = all_benchmarks()
    assert [b.name for b in select(["bert"], benches)] == ["bert-fp32", "bert-tf32-fp16"]
    nlp = {b.name for b in benches.values() if b.family == "nlp"}
    assert {"bert-fp32", "t5", "whisper"} <= nlp
    assert {b.name for b in select(["matmul-fp32", "nlp"], benches)} == {"matmul-fp32", *nlp}


def test_unknown_benchmark_suggests_closest():
    with pytest.raises(UnknownBenchmark, match=r"'matmull'.*did you mean matmul"):
        select(["matmull"], all_benchmarks())


@pytest.mark.parametrize(("old", "new", "field"), [
    ('plan = "per_device"', 'plan = "sometimes"', "plan"),
    ("weight = 1.0  # Milabench", 'weight = "heavy"  # Milabench', "variants.bert-tf32-fp16.weight"),
    ('plan = "per_device"', 'plan = "per_device"\nmin_nodes = 0', "min_nodes"),
    ('plan = "per_device"', 'plan = "per_device"\nmin_devices = -1', "min_devices"),
])
def test_malformed_benchmark_names_field(benchmarks_copy, old, new, field):
    path = benchmarks_copy / "bert" / "benchmark.toml"
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ConfigError) as err:
        all_benchmarks()
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


def test_benchmark_missing_size(benchmarks_copy):
    path = benchmarks_copy / "matmul" / "benchmark.toml"
    path.write_text(path.read_text().replace("[sizes.full]", "[sizes.huge]"))
    with pytest.raises(ConfigError, match=r"'sizes.full' is missing"):
        all_benchmarks()


def test_benchmark_entry_must_exist(benchmarks_copy):
    (benchmarks_copy / "bert" / "main.py").unlink()
    with pytest.raises(ConfigError, match=r"'entry' is 'main.py' but .* does not exist"):
        all_benchmarks()


def test_a_benchmark_folder_named_twice_is_read_once(tmp_path, monkeypatch):
    from milabox.definitions import benchmarks as definitions
    extra = tmp_path / "mine"
    (extra / "mybench").mkdir(parents=True)
    (extra / "mybench" / "main.py").write_text("")
    suite = definitions.package_path("suite") / "matmul" / "benchmark.toml"
    (extra / "mybench" / "benchmark.toml").write_text(suite.read_text().replace("[variants.matmul-", "[variants.mine-"))
    monkeypatch.setenv("MILABOX_BENCHMARKS", f"{extra}{__import__('os').pathsep}{extra}/.")
    monkeypatch.setattr(definitions, "_extra_dirs", [extra])  # and --benchmarks-dir, as --resume repeats it
    assert [d for d in definitions.benchmark_dirs() if d.resolve() == extra.resolve()] == [extra]
    assert "mine-fp32" in all_benchmarks()
