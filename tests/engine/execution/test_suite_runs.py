"""The suite as a whole: selection, the joint lock, the README's table, and every smoke benchmark on the real engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from milabox.definitions.benchmarks import all_benchmarks


@pytest.mark.engine
def test_whole_cpu_smoke_suite_passes(engine, tmp_path):
    """`milabox build --vendor cpu` then `milabox run --suite all --size smoke`: every row passes with a positive perf."""
    env_cmd = [sys.executable, "-m", "milabox"]
    build = subprocess.run([*env_cmd, "build", "--suite", "all", "--vendor", "cpu"], capture_output=True, text=True,
                           check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    run_dir = tmp_path / "suite"
    run = subprocess.run([*env_cmd, "run", "--suite", "all", "--vendor", "cpu", "--size", "smoke", "--run-dir",
                          str(run_dir), "--format", "json"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    # One node: the rows spanning nodes are skipped, and the manifest's coverage says why.
    spanning = {b.name for b in all_benchmarks().values() if b.supports("cpu") and b.min_nodes > 1}
    expected = {b.name for b in all_benchmarks().values() if b.supports("cpu")} - spanning
    rows = {row["name"]: row for row in report["benchmarks"]}
    assert set(rows) == expected and spanning
    excluded = json.loads((run_dir / "manifest.json").read_text())["excluded"]
    assert {name for name in spanning if excluded.get(name, "").startswith("needs 2 nodes")} == spanning
    failed = {name: row for name, row in rows.items() if row["fail"] or not row["perf"] or row["perf"] <= 0}
    assert not failed, [json.loads((p).read_text())["cause"] for p in run_dir.glob("*/*/record.json")
                        if json.loads(p.read_text())["status"] != "ok"]
    assert report["failure_rate"] == 0
    assert engine.containers() == []
