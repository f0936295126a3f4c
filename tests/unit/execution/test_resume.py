"""Resuming a run, losing the engine mid-run, and removing dead runs' leftover containers, against the FakeEngine.

Each test runs ``milabox.execution.local.run`` for real (run folder, records, manifest); only the engine is fake.
"""

from __future__ import annotations

import json
import os

import pytest
from fakes import FakeEngine, crash, engine_gone, interrupt, ok

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import get_vendor
from milabox.engine import CONTAINER_LABEL, ContainerRequest
from milabox.errors import ConfigError
from milabox.execution.attempt import RUN_DIR_LABEL, RUN_ID_LABEL
from milabox.execution.leftovers import process_start, remove_dead_runs
from milabox.execution.local import run
from milabox.execution.plan import RunOptions
from milabox.images.naming import benchmark_tag
from milabox.rundir.layout import MANIFEST_NAME, RECORD_NAME

CPU = get_vendor("cpu")
BENCHMARKS = all_benchmarks()
NAMES = ("matmul-fp32", "bert-fp32")


def _engine() -> FakeEngine:
    return FakeEngine(images={benchmark_tag(BENCHMARKS[n].group, CPU) for n in NAMES})


def _run(engine: FakeEngine, tmp_path, resume: bool = False, **options):
    return run(engine, [BENCHMARKS[n] for n in NAMES], CPU,
               RunOptions(run_dir=tmp_path / "run", telemetry_interval_s=0, command=("milabox", "run"),
                          resume=resume, **options))


def _record(folder, attempt: str) -> dict:
    return json.loads((folder / attempt / RECORD_NAME).read_text())


def _manifest(folder) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


def test_resume_runs_only_the_failed_and_missing_attempts_in_new_folders(tmp_path):
    engine = _engine()
    engine.script("matmul-fp32", crash(), ok())
    engine.script("bert-fp32", interrupt())
    folder = _run(engine, tmp_path, repeat=2)
    assert _manifest(folder)["status"] == "interrupted"
    first = len(engine.created)  # matmul r0 (crash), r1 (ok), bert r0 (interrupted); bert r1 never started
    engine.script("bert-fp32", ok())
    _run(engine, tmp_path, resume=True, repeat=2)
    ran = [c.request.labels["milabox.attempt"] for c in engine.created[first:]]
    assert ran == ["matmul-fp32/r2-dall", "bert-fp32/r1-dall", "bert-fp32/r2-dall"]
    assert _record(folder, "matmul-fp32/r0-dall")["superseded_by"] == "matmul-fp32/r2-dall"
    assert _record(folder, "matmul-fp32/r2-dall")["retry_of"] == "matmul-fp32/r0-dall"
    assert _record(folder, "bert-fp32/r0-dall")["status"] == "interrupted"  # kept, not overwritten
    manifest = _manifest(folder)
    assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1
    assert manifest["resumed"][0]["ended"] and manifest["resumed"][0]["command"] == ["milabox", "run"]
    before = len(engine.created)
    _run(engine, tmp_path, resume=True, repeat=2)  # nothing left to do
    assert len(engine.created) == before and len(_manifest(folder)["resumed"]) == 2


def test_resume_refuses_a_different_image_or_setup_in_one_line(tmp_path):
    engine = _engine()
    folder = _run(engine, tmp_path)
    with pytest.raises(ConfigError, match=r"^--resume: .*manifest.json was run with repeat 1, this setup has 2;"):
        _run(engine, tmp_path, resume=True, repeat=2)
    tag = benchmark_tag(BENCHMARKS["bert-fp32"].group, CPU)
    old = engine.image(tag).id
    engine.remove_image(tag)
    engine.add_image("unrelated:1")
    assert engine.add_image(tag).id != old  # rebuilt: a new id
    with pytest.raises(ConfigError, match=r"^--resume: .* was run with images .* this setup has") as caught:
        _run(engine, tmp_path, resume=True)
    assert "\n" not in str(caught.value)
    assert _manifest(folder)["status"] == "complete"


def test_a_lost_engine_ends_the_run_as_engine_lost_with_results_kept(tmp_path):
    from milabox.cli.common import EXIT_ENGINE_LOST, exit_for_run
    engine = _engine()
    engine.script("matmul-fp32", ok(), engine_gone())
    folder = _run(engine, tmp_path, repeat=2)
    assert _record(folder, "matmul-fp32/r0-dall")["status"] == "ok"
    lost = _record(folder, "matmul-fp32/r1-dall")
    assert lost["cause"] == "engine lost: the Docker engine at fake://engine stopped answering"
    assert lost["engine_lost"] is True and "143" not in lost["cause"]
    assert _manifest(folder)["status"] == "engine-lost"
    assert not (folder / "bert-fp32").exists()  # nothing started after the loss
    with pytest.raises(SystemExit) as code:
        exit_for_run(folder)
    assert code.value.code == EXIT_ENGINE_LOST == 75


def _container(engine: FakeEngine, labels: dict[str, str]) -> str:
    image = next(iter(engine.disk_usage()))["tags"][0]
    return engine.container(ContainerRequest(image=image, labels=labels)).id


def test_startup_cleanup_removes_only_dead_runs_containers(tmp_path):
    engine = _engine()
    runs = {}
    for name, manifest in {"ended": {"ended": "2025-01-01T00:00:00+00:00", "run_id": "a"},
                           "dead-pid": {"ended": None, "run_id": "b", "host": os.uname().nodename, "pid": 2**22 + 7,
                                        "pid_started": "1"},
                           "resumed-since": {"ended": None, "run_id": "other"},
                           "alive": {"ended": None, "run_id": "d", "host": os.uname().nodename, "pid": os.getpid(),
                                     "pid_started": process_start(os.getpid())},
                           "other-host": {"ended": None, "run_id": "e", "host": "elsewhere", "pid": 1}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / MANIFEST_NAME).write_text(json.dumps(manifest))
        run_id = manifest["run_id"] if name != "resumed-since" else "c"
        runs[name] = _container(engine, {CONTAINER_LABEL: "x", RUN_ID_LABEL: run_id,
                                         RUN_DIR_LABEL: str(tmp_path / name)})
    gone_folder = _container(engine, {CONTAINER_LABEL: "x", RUN_ID_LABEL: "f", RUN_DIR_LABEL: str(tmp_path / "no")})
    not_milabox = _container(engine, {RUN_ID_LABEL: "a", RUN_DIR_LABEL: str(tmp_path / "ended")})
    unlabelled = _container(engine, {"vendor.thing": "1"})
    assert remove_dead_runs(engine) == 4
    assert sorted(engine.removed) == sorted([runs["ended"], runs["dead-pid"], runs["resumed-since"], gone_folder])
    assert {runs["alive"], runs["other-host"], not_milabox, unlabelled} <= {c.id for c in engine.created
                                                                          if c.state != "removed"}


def test_every_container_of_a_run_carries_its_run_id_recorded_in_the_manifest(tmp_path):
    engine = _engine()
    folder = _run(engine, tmp_path)
    manifest = _manifest(folder)
    assert manifest["runtime"] == "docker" and manifest["pid"] == os.getpid() and manifest["run_id"]
    assert {c.request.labels[RUN_ID_LABEL] for c in engine.created} == {manifest["run_id"]}
    assert remove_dead_runs(engine) == 0  # the run removed its own containers
