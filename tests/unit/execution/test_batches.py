"""How a run measures: per-device attempts as one concurrent batch, Ctrl-C in a batch, CPU core sets,
``--repeat auto`` and ``--until-stable`` — against the in-memory FakeEngine (no daemon)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import pytest
from fakes import Behaviour, FakeEngine, ok

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import get_vendor
from milabox.errors import ConfigError, RunError
from milabox.execution import plan
from milabox.execution.local import run
from milabox.execution.plan import RunOptions, core_sets
from milabox.images.naming import benchmark_tag
from milabox.reporting.formats import format_report
from milabox.reporting.summary import summarize
from milabox.rundir.layout import MANIFEST_NAME, RECORD_NAME
from milabox.rundir.read import load_run

CPU = get_vendor("cpu")
BENCHMARKS = all_benchmarks()


@pytest.fixture
def four_cores(monkeypatch, tmp_path):
    """This host seen as one NUMA node of four cores (the CPU vendor's core sets do not depend on the machine)."""
    monkeypatch.setattr(plan.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(plan, "NUMA_CPULISTS", str(tmp_path / "no-numa" / "node*" / "cpulist"))


def _engine(*names: str) -> FakeEngine:
    return FakeEngine(images={benchmark_tag(BENCHMARKS[n].group, CPU) for n in names})


def _run(engine, tmp_path, names, **options):
    return run(engine, [BENCHMARKS[n] for n in names], CPU,
               RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0, command=("milabox", "run"), **options))


def _record(folder, name, attempt):
    return json.loads((folder / name / attempt / RECORD_NAME).read_text())


def test_a_per_device_batch_is_created_and_started_before_any_wait(tmp_path, four_cores):
    engine = _engine("matmul-fp32")
    engine.script("matmul-fp32", ok(100.0), ok(90.0))
    folder = _run(engine, tmp_path, ("matmul-fp32",), devices=("0", "1"))
    kinds = [kind for kind, _ in engine.calls]
    assert kinds[:4] == ["create", "create", "start", "start"] and kinds[4:] == ["wait", "wait"]
    first, second = _record(folder, "matmul-fp32", "r0-d0"), _record(folder, "matmul-fp32", "r0-d1")
    assert first["concurrent"] == second["concurrent"] == ["0", "1"]
    assert first["batch_started"] == second["batch_started"] and first["batch_ended"] == second["batch_ended"]
    assert {first["rate"], second["rate"]} == {100.0, 90.0}
    # Disjoint core sets, pinned, each with its own thread count.
    requests = sorted(engine.requests, key=lambda r: r.labels["milabox.attempt"])
    assert [r.cpuset_cpus for r in requests] == ["0,1", "2,3"]
    assert [r.environment["OMP_NUM_THREADS"] for r in requests] == ["2", "2"]
    assert "--cpuset-cpus 0,1" in first["reproduce"]
    assert engine.containers() == []


def test_without_devices_the_cpu_is_one_container_with_every_core(tmp_path):
    engine = _engine("matmul-fp32")
    folder = _run(engine, tmp_path, ("matmul-fp32",))
    assert len(engine.requests) == 1 and engine.requests[0].cpuset_cpus == ""
    assert "OMP_NUM_THREADS" not in engine.requests[0].environment
    assert _record(folder, "matmul-fp32", "r0-dall")["concurrent"] == ["all"]


def test_ctrl_c_during_a_batch_stops_and_records_every_container(tmp_path, four_cores):
    engine = _engine("matmul-fp32", "bert-fp32")
    engine.script("matmul-fp32", Behaviour(block=True, seconds=20))

    def press_ctrl_c():  # once both containers wait, as a user would while a long benchmark runs
        deadline = time.monotonic() + 20
        while [k for k, _ in engine.calls].count("wait") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    folder = _run(engine, tmp_path, ("matmul-fp32", "bert-fp32"), devices=("0", "1"))
    for attempt in ("r0-d0", "r0-d1"):
        record = _record(folder, "matmul-fp32", attempt)
        assert record["status"] == "interrupted", record
        assert record["cause"].startswith("interrupted by the user")
    assert all(c.stopped for c in engine.created) and len(engine.created) == 2  # bert never started
    assert sorted(engine.removed) == sorted(c.id for c in engine.created) and engine.containers() == []
    assert json.loads((folder / MANIFEST_NAME).read_text())["status"] == "interrupted"


@pytest.mark.parametrize(("rates", "attempts", "warned"), [
    ((100.0, 100.5, 99.5), 3, False),              # CV 0.5 %: 3 repeats are enough
    ((100.0, 90.0, 110.0, 100.0, 100.0), 5, False),  # CV 10 %: 5 repeats
    ((100.0, 50.0, 150.0), 3, True),               # CV 50 %: a warning, no more repeats
], ids=["quiet", "noisy", "untrustworthy"])
def test_repeat_auto_chooses_the_repeats_from_the_cv_of_the_first_three(tmp_path, rates, attempts, warned):
    engine = _engine("matmul-fp32")
    engine.script("matmul-fp32", *(ok(r) for r in rates))
    folder = _run(engine, tmp_path, ("matmul-fp32",), auto_repeat=True)
    assert len(engine.created) == attempts
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    choice = manifest["repeat_auto"]["matmul-fp32"]
    assert choice["repeats"] == attempts and choice["cv_pct"] == pytest.approx(
        100 * __import__("statistics").stdev(rates[:3]) / __import__("statistics").mean(rates[:3]))
    assert ("cannot be trusted" in choice.get("warning", "")) is warned
    assert manifest["status"] == "complete"


def _steps(rates):
    """Events of a benchmark whose per-step rates are ``rates`` (then a summary and a clean end)."""
    return (*({"event": "rate", "step": i, "value": r, "unit": "items/s"} for i, r in enumerate(rates)),
            {"event": "summary", "rate": sum(rates) / len(rates), "unit": "items/s", "items": 1.0, "seconds": 1.0,
             "steps": len(rates)},
            {"event": "end", "status": "ok", "error": None})


def test_until_stable_repeats_an_attempt_with_a_slow_phase(tmp_path):
    slow = Behaviour(events=_steps([100.0] * 10 + [50.0] * 6 + [100.0] * 10))
    steady = Behaviour(events=_steps([100.0] * 26))
    engine = _engine("matmul-fp32", "bert-fp32")
    engine.script("matmul-fp32", slow, steady)
    engine.script("bert-fp32", slow)  # never stable: at most --repeat attempts
    folder = _run(engine, tmp_path, ("matmul-fp32", "bert-fp32"), repeat=3, until_stable=True)
    assert _record(folder, "matmul-fp32", "r0-dall")["unstable"] == {"steps": [10, 15]}
    assert "unstable" not in _record(folder, "matmul-fp32", "r1-dall")
    assert not (folder / "matmul-fp32" / "r2-dall").exists()
    assert [(folder / "bert-fp32" / f"r{n}-dall").exists() for n in range(4)] == [True, True, True, False]


def test_without_until_stable_an_unstable_attempt_is_marked_not_repeated(tmp_path):
    engine = _engine("matmul-fp32")
    engine.script("matmul-fp32", Behaviour(events=_steps([100.0] * 10 + [50.0] * 6 + [100.0] * 10)))
    folder = _run(engine, tmp_path, ("matmul-fp32",))
    assert _record(folder, "matmul-fp32", "r0-dall")["unstable"] == {"steps": [10, 15]}
    assert len(engine.created) == 1


def test_core_sets_follow_numa_nodes_else_split_the_cores(tmp_path):
    for n, cpus in enumerate(("0-3,8-11", "4-7,12-15")):
        (tmp_path / f"node{n}").mkdir()
        (tmp_path / f"node{n}" / "cpulist").write_text(cpus + "\n")
    numa = str(tmp_path / "node*" / "cpulist")
    assert core_sets(("1",), numa, cores=range(16)) == {"1": [4, 5, 6, 7, 12, 13, 14, 15]}
    assert core_sets(("0", "1"), str(tmp_path / "none"), cores=range(5)) == {"0": [0, 1, 2], "1": [3, 4]}
    with pytest.raises(ConfigError, match="not a NUMA node of this host; valid: 0-1"):
        core_sets(("2",), numa, cores=range(16))
    with pytest.raises(ConfigError, match="only 2 cores"):
        core_sets(("0", "1", "2"), str(tmp_path / "none"), cores=range(2))
    with pytest.raises(ConfigError, match="not distinct CPU device numbers"):
        core_sets(("0", "0"), str(tmp_path / "none"), cores=range(2))


def test_rows_needing_more_devices_or_nodes_than_the_run_has_are_skipped_and_named_in_the_coverage(tmp_path,
                                                                                                   four_cores):
    matmul = BENCHMARKS["matmul-fp32"]
    two_nodes = dataclasses.replace(matmul, name="matmul-nodes", min_nodes=2)
    three_devices = dataclasses.replace(matmul, name="matmul-3dev", min_devices=3)
    engine = _engine("matmul-fp32")
    folder = run(engine, [matmul, two_nodes, three_devices], CPU,
                 RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0, command=("milabox", "run"),
                            devices=("0", "1")))
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["benchmarks"] == ["matmul-fp32"]
    assert manifest["excluded"] == {
        "matmul-nodes": "needs 2 nodes; this run has 1 (run it with --nodes, or under Slurm with 2 nodes)",
        "matmul-3dev": "needs 3 devices; this run has 2"}
    assert "excluded: matmul-nodes [needs 2 nodes" in format_report(summarize(load_run(folder)), "table")
    # Without --devices the CPU is one device that cannot be counted: a multi-device row runs (as gloo processes).
    assert plan.unmet_needs(three_devices, None, 1) is None
    assert plan.unmet_needs(two_nodes, None, 2) is None
    with pytest.raises(RunError, match="nothing to run.*matmul-nodes: needs 2 nodes"):
        run(engine, [two_nodes], CPU, RunOptions(run_dir=tmp_path / "run2", telemetry_interval_s=0))
