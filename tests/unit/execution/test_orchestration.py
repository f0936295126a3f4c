"""How a run turns each way a container can end into a record, against the in-memory FakeEngine (no daemon).

Each test runs ``milabox.execution.local.run`` for real (run folder, records, manifest, provenance) and reads
the folder back with ``load_run``; only the engine is fake.
"""

from __future__ import annotations

import inspect
import json

import pytest
from fakes import FakeContainer, FakeEngine, crash, engine_lost, hang, interrupt, ok, oom

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import get_vendor
from milabox.engine import Container, Engine
from milabox.errors import ImageNotBuilt
from milabox.execution.local import run
from milabox.execution.plan import RunOptions
from milabox.execution.provenance import PACKAGES_PATH
from milabox.images.naming import benchmark_tag
from milabox.rundir.layout import PROVENANCE_NAME
from milabox.rundir.model import Record, Run
from milabox.rundir.read import load_run

CPU = get_vendor("cpu")
BENCHMARKS = all_benchmarks()


def _engine(*names: str) -> FakeEngine:
    """An engine holding the images of these benchmarks' groups."""
    return FakeEngine(images={benchmark_tag(BENCHMARKS[n].group, CPU) for n in names})


def _run(engine: FakeEngine, tmp_path, names: tuple[str, ...], **options) -> Run:
    folder = run(engine, [BENCHMARKS[n] for n in names], CPU,
                 RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0, command=("milabox", "run"), **options))
    return load_run(folder)


def _records(loaded: Run) -> dict[tuple[str, int], Record]:
    return {(a.benchmark, a.record.repeat): a.record for a in loaded.attempts}


def _no_container_left(engine: FakeEngine) -> None:
    assert engine.created, "the run created no container"
    assert sorted(engine.removed) == sorted(c.id for c in engine.created)
    assert engine.containers() == []


def _members(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and (not n.startswith("_") or n in
                                                                      ("__enter__", "__exit__"))]


def test_the_fake_and_the_docker_engine_both_meet_the_contract():
    from milabox.engine.docker import DockerContainer, DockerEngine

    engine_methods, container_methods = _members(Engine), _members(Container)
    assert {"container", "image", "build", "read_image_files", "push_image"} <= set(engine_methods)
    assert {"start", "wait", "stop", "inspect", "remove", "__enter__"} <= set(container_methods)
    for protocol, methods, implementations in ((Engine, engine_methods, (FakeEngine, DockerEngine)),
                                               (Container, container_methods, (FakeContainer, DockerContainer))):
        for name in methods:
            wanted = list(inspect.signature(getattr(protocol, name)).parameters)
            for implementation in implementations:
                got = list(inspect.signature(getattr(implementation, name)).parameters)
                assert got == wanted, f"{implementation.__name__}.{name}{got} differs from the contract {wanted}"


def test_a_successful_attempt_is_recorded_with_its_rate_and_provenance(tmp_path):
    engine = _engine("matmul-fp32")
    tag = benchmark_tag("matmul", CPU)
    engine.remove_image(tag)
    engine.add_image(tag, labels={"milabox.torch": "2.13.0+cpu"}, files={PACKAGES_PATH: b"torch==2.13.0+cpu\n"})
    engine.script("matmul-fp32", ok(rate=412.5))
    loaded = _run(engine, tmp_path, ("matmul-fp32",))
    record = _records(loaded)[("matmul-fp32", 0)]
    assert (record.status, record.cause, record.raw["rate"], record.exit_code) == ("ok", None, 412.5, 0)
    assert loaded.manifest.status == "complete"
    assert engine.requests[0].labels["milabox.benchmark"] == "matmul-fp32"
    provenance = json.loads((loaded.path / PROVENANCE_NAME).read_text())
    assert provenance["engine"]["version"] == "0.0.0-fake"
    assert provenance["images"]["matmul"]["packages"] == ["torch==2.13.0+cpu"]
    _no_container_left(engine)


@pytest.mark.parametrize(("timeout_s", "said"), [(None, "300"), (7.5, "7.5")])
def test_a_timeout_becomes_a_failed_record(tmp_path, timeout_s, said):
    engine = _engine("matmul-fp32")
    engine.script("matmul-fp32", hang())
    record = _records(_run(engine, tmp_path, ("matmul-fp32",), timeout_s=timeout_s))[("matmul-fp32", 0)]
    assert record.status == "failed"
    assert record.cause == f"timed out after {said} s (killed)"
    assert record.timed_out and record.exit_code is None
    assert engine.created[0].waited_with == float(said)  # the benchmark's own limit, or --timeout
    _no_container_left(engine)


def test_an_oom_kill_becomes_a_failed_record(tmp_path):
    engine = _engine("matmul-fp32")
    engine.script("matmul-fp32", oom())
    record = _records(_run(engine, tmp_path, ("matmul-fp32",), memory="1g"))[("matmul-fp32", 0)]
    assert (record.status, record.cause) == ("failed", "out of memory (OOM-killed)")
    assert record.oom_killed and record.exit_code == 137
    assert engine.requests[0].memory == "1g"
    _no_container_left(engine)


@pytest.mark.parametrize("in_events", [True, False], ids=["end-event", "log-only"])
def test_a_crash_keeps_the_benchmarks_error_line(tmp_path, in_events):
    engine = _engine("matmul-fp32")
    engine.script("matmul-fp32", crash("RuntimeError: mat1 and mat2 shapes cannot be multiplied", in_events=in_events))
    record = _records(_run(engine, tmp_path, ("matmul-fp32",)))[("matmul-fp32", 0)]
    assert record.status == "failed" and record.exit_code == 1
    assert record.cause == "exit code 1: RuntimeError: mat1 and mat2 shapes cannot be multiplied"
    _no_container_left(engine)


def test_ctrl_c_records_the_attempt_interrupted_and_skips_the_rest(tmp_path):
    engine = _engine("matmul-fp32", "bert-fp32", "llama-fp32")
    engine.script("bert-fp32", interrupt())
    loaded = _run(engine, tmp_path, ("matmul-fp32", "bert-fp32", "llama-fp32"))
    records = _records(loaded)
    assert set(records) == {("matmul-fp32", 0), ("bert-fp32", 0)}  # llama-fp32 never started
    assert records[("matmul-fp32", 0)].status == "ok"
    assert records[("bert-fp32", 0)].status == "interrupted"
    assert records[("bert-fp32", 0)].cause.startswith("interrupted by the user")
    assert loaded.manifest.status == "interrupted"
    assert [r.labels["milabox.benchmark"] for r in engine.requests] == ["matmul-fp32", "bert-fp32"]
    assert engine.created[1].stopped  # the wait stopped it
    _no_container_left(engine)


def test_until_sem_stops_repeating_once_the_rates_agree(tmp_path):
    engine = _engine("matmul-fp32", "bert-fp32")
    engine.script("matmul-fp32", ok(100.0), ok(100.02), ok(99.99), ok(100.01), ok(100.0))
    engine.script("bert-fp32", ok(100.0), ok(160.0), ok(55.0), ok(130.0), ok(75.0))  # never below 1 %
    loaded = _run(engine, tmp_path, ("matmul-fp32", "bert-fp32"), repeat=5, until_sem_pct=1.0)
    repeats = {name: sorted(r for b, r in _records(loaded) if b == name) for name in ("matmul-fp32", "bert-fp32")}
    assert repeats == {"matmul-fp32": [0, 1], "bert-fp32": [0, 1, 2, 3, 4]}
    assert all(r.status == "ok" for r in _records(loaded).values())
    assert loaded.manifest.status == "complete" and len(engine.created) == 7
    _no_container_left(engine)


@pytest.mark.parametrize("at", ["create", "start", "wait"])
def test_an_engine_error_fails_the_attempt_and_the_run_goes_on(tmp_path, at):
    engine = _engine("matmul-fp32", "bert-fp32")
    engine.script("matmul-fp32", engine_lost("the engine stopped answering (connection reset)", at=at))
    loaded = _run(engine, tmp_path, ("matmul-fp32", "bert-fp32"))
    records = _records(loaded)
    assert records[("matmul-fp32", 0)].status == "failed"
    assert records[("matmul-fp32", 0)].cause == "the engine stopped answering (connection reset)"
    assert records[("bert-fp32", 0)].status == "ok"
    assert loaded.manifest.status == "complete"
    assert len(engine.requests) == 2
    _no_container_left(engine)


def test_a_missing_image_stops_the_run_before_anything_is_written(tmp_path):
    engine = _engine("matmul-fp32")  # no bert image
    with pytest.raises(ImageNotBuilt, match=benchmark_tag("bert", CPU)):
        _run(engine, tmp_path, ("matmul-fp32", "bert-fp32"))
    assert engine.requests == [] and not (tmp_path / "run").exists()
