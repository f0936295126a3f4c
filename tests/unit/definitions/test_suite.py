"""The suite as a whole: selection, the joint lock, the README's table, and every smoke benchmark on the real engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from helpers import PROJECT

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.errors import ConfigError, UnknownBenchmark
from milabox.images.lock import check_lock, lock_inputs, read_pins

FAMILIES = {"matmul", "vision", "nlp", "llm", "generative", "graph", "rl", "recsys", "multi-device"}


def test_every_family_is_present_with_at_least_16_rows():
    benches = all_benchmarks()
    assert len(benches) >= 16
    assert FAMILIES <= {b.family for b in benches.values()}
    assert all(b.plan == "all_devices" for b in benches.values() if b.family == "multi-device")


def test_standard_suite_is_the_weighted_set_and_all_is_everything():
    benches = all_benchmarks()
    standard = select([], benches, suite="standard")
    assert standard and all(b.weight > 0 for b in standard)
    assert {b.name for b in select([], benches, suite="all")} == set(benches)


def test_exclude_by_family_and_select_by_tag():
    benches = all_benchmarks()
    chosen = select([], benches, suite="all", exclude=["nlp", "matmul-fp32"])
    assert chosen and not any(b.family == "nlp" or b.name == "matmul-fp32" for b in chosen)
    assert {b.family for b in select(["nlp"], benches)} == {"nlp"}
    with pytest.raises(UnknownBenchmark, match="unknown suite 'fast'"):
        select([], benches, suite="fast")


def test_cpu_lock_is_current_and_pins_every_requirement_and_torch():
    cpu = get_vendor("cpu")
    benches = list(all_benchmarks().values())
    pins = read_pins(check_lock(cpu, benches))
    assert pins["torch"] == cpu.torch_version
    for requirement in lock_inputs(cpu, benches):
        name, version = requirement.split("==")
        assert pins[re.sub(r"[-_.]+", "-", name).lower()] == version, requirement


def test_lock_refuses_loose_or_conflicting_pins(benchmarks_copy):
    path = benchmarks_copy / "bert" / "benchmark.toml"
    text = path.read_text()
    path.write_text(text.replace('requirements = ["transformers==5.23.0"]', 'requirements = ["transformers>=5"]'))
    with pytest.raises(ConfigError, match=r"'transformers>=5' is not an exact pin"):
        lock_inputs(get_vendor("cpu"), list(all_benchmarks().values()))
    path.write_text(text.replace('requirements = ["transformers==5.23.0"]', 'requirements = ["transformers==5.0.0"]'))
    (benchmarks_copy / "matmul" / "benchmark.toml").write_text(
        (benchmarks_copy / "matmul" / "benchmark.toml").read_text().replace(
            'unit = "TFLOPS"', 'unit = "TFLOPS"\nrequirements = ["Transformers==5.23.0"]'))
    with pytest.raises(ConfigError, match=r"disagrees with"):
        lock_inputs(get_vendor("cpu"), list(all_benchmarks().values()))


def test_stale_lock_is_refused(benchmarks_copy):
    path = benchmarks_copy / "bert" / "benchmark.toml"
    path.write_text(path.read_text().replace('requirements = ["transformers==5.23.0"]',
                                             'requirements = ["transformers==5.23.0", "einops==0.8.1"]'))
    with pytest.raises(ConfigError, match=r"cpu.txt is out of date.*milabox lock --vendor cpu"):
        check_lock(get_vendor("cpu"), list(all_benchmarks().values()))


def test_readme_benchmark_table_is_current():
    table = subprocess.run([sys.executable, "-m", "milabox", "list", "--format", "markdown"], capture_output=True,
                           text=True, check=True).stdout.strip()
    readme = (PROJECT / "README.md").read_text()
    found = re.search(r"<!-- benchmarks:start -->\n(.*?)\n<!-- benchmarks:end -->", readme, re.DOTALL)
    assert found, "README.md lacks the <!-- benchmarks:start/end --> markers"
    assert found[1].strip() == table, "README's benchmark table is out of date: paste `milabox list --format markdown`"


@pytest.mark.parametrize("vendor_name", ["cuda", "rocm", "xpu"])
def test_every_full_size_is_a_valid_container_request_for_gpu_vendors(vendor_name, tmp_path):
    from milabox.execution.plan import Attempt
    from milabox.execution.requests import container_request
    vendor = get_vendor(vendor_name)
    for bench in all_benchmarks().values():
        if not bench.supports(vendor.name):
            continue
        request = container_request(Attempt(bench, 0, ("0",)), vendor, f"milabox/{bench.group}:x", tmp_path, "full")
        config = json.loads(request.environment["MILABOX_CONFIG"])
        assert config["size"] == "full" and config["benchmark"] == bench.name and config["steps"] > 0
