"""``--set [ROW.]KEY=VALUE``: checked against the size's parameters, handed to the container, recorded."""

from __future__ import annotations

import json

import pytest
from fakes import FakeEngine

from milabox.definitions.benchmarks import all_benchmarks, parse_overrides
from milabox.definitions.vendors import get_vendor
from milabox.errors import ConfigError
from milabox.execution.local import run
from milabox.execution.plan import RunOptions
from milabox.images.naming import benchmark_tag
from milabox.rundir.layout import MANIFEST_NAME, PROVENANCE_NAME

CPU = get_vendor("cpu")
B = all_benchmarks()
ROWS = [B["matmul-fp32"], B["bert-fp32"]]


def test_a_good_set_changes_the_rows_that_have_the_key():
    assert parse_overrides(["steps=7", "matmul-fp32.n=256", "bert-fp32.max_seconds=5"], ROWS, "smoke") == {
        "matmul-fp32": {"steps": 7, "n": 256}, "bert-fp32": {"steps": 7, "max_seconds": 5}}


@pytest.mark.parametrize(("pair", "said"), [
    ("matmul-fp32.batch_size=8", "matmul-fp32 has no smoke parameter 'batch_size'; valid: "),
    ("nosuchkey=1", "no selected benchmark has a smoke parameter 'nosuchkey'; valid: "),
    ("matmul-fp32.n=big", "matmul-fp32's n is int (512), not str ('big')"),
    ("matmul-fp32.n=true", "matmul-fp32's n is int (512), not bool (True)"),
    ("llama-fp32.steps=1", "'llama-fp32' is not a selected benchmark"),
    ("steps", "expected KEY=VALUE"),
])
def test_a_bad_set_is_one_line_naming_key_row_and_valid_keys(pair, said):
    with pytest.raises(ConfigError) as err:
        parse_overrides([pair], ROWS, "smoke")
    assert said in str(err.value) and "\n" not in str(err.value)
    if "valid: " in said:
        assert "steps" in str(err.value).split("valid: ")[1]


def test_overrides_reach_the_container_the_manifest_and_provenance(tmp_path):
    engine = FakeEngine(images={benchmark_tag("matmul", CPU)})
    overrides = parse_overrides(["matmul-fp32.n=128"], ROWS[:1], "smoke")
    folder = run(engine, ROWS[:1], CPU, RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0,
                                                    overrides=overrides, min_seconds=2.0))
    config = json.loads(engine.requests[0].environment["MILABOX_CONFIG"])
    assert (config["n"], config["min_seconds"], config["steps"]) == (128, 2.0, B["matmul-fp32"].sizes["smoke"]["steps"])
    assert json.loads((folder / MANIFEST_NAME).read_text())["overrides"] == {"matmul-fp32": {"n": 128}}
    assert json.loads((folder / PROVENANCE_NAME).read_text())["settings"]["overrides"] == {"matmul-fp32": {"n": 128}}


def test_min_seconds_above_the_max_seconds_cap_is_refused_before_anything_runs(tmp_path):
    engine = FakeEngine(images={benchmark_tag("matmul", CPU)})
    cap = B["matmul-fp32"].sizes["smoke"]["max_seconds"]
    with pytest.raises(ConfigError, match=f"--min-seconds {cap + 1:g}: above matmul-fp32's max_seconds"):
        run(engine, ROWS[:1], CPU, RunOptions(run_dir=tmp_path / "run", min_seconds=cap + 1.0))
    assert engine.requests == [] and not (tmp_path / "run").exists()
