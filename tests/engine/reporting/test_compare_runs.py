"""`milabox compare`: ratios, significance, regressions and the fairness disclosure.

Unit tests write run folders on disk (tests/runfolders.py) with rates chosen so that the expected
verdict is clear by hand; the engine test plants a real slowdown by running with fewer threads.
"""

from __future__ import annotations

import functools
import json

import helpers
import pytest
from helpers import cell

from milabox.reporting.compare import compare, format_comparison
from milabox.rundir.read import load_run

milabox = functools.partial(helpers.milabox, timeout=120)

# ------------------------------------------------------------------------------------------
# On the real engine: the "done when"


@pytest.fixture(scope="module")
def matmul_image(engine, tmp_path_factory):
    """The CPU matmul image (built here from cache, or already built by `make demo`)."""
    from milabox.definitions.benchmarks import all_benchmarks, select
    from milabox.definitions.vendors import get_vendor
    from milabox.images.build import build
    from milabox.images.sources import discover

    class Quiet:
        def begin(self, image, log_path): ...
        def step(self, image, step, steps, instruction): ...
        def line(self, image, text): ...
        def end(self, result): ...

    build(engine, select(["matmul"], all_benchmarks()), get_vendor("cpu"), discover(), Quiet(),
          tmp_path_factory.mktemp("logs"))


def run_matmul(folder, *extra):
    proc = milabox("run", "matmul-fp32", "--vendor", "cpu", "--run-dir", str(folder), "--format", "json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.engine
def test_compare_flags_fewer_threads_and_not_an_identical_run(engine, matmul_image, tmp_path):
    # Three runs of five repeats: default threads (all cores), one thread (the planted slowdown), default again.
    # Each attempt measures 2 s of n=1024 (smoke's 0.2 s of n=512 is noise on a shared machine).
    sized = ("--repeat", "5", "--set", "n=1024", "--min-seconds", "2")
    first = run_matmul(tmp_path / "default", *sized)
    run_matmul(tmp_path / "one-thread", *sized, "--env", "OMP_NUM_THREADS=1")
    run_matmul(tmp_path / "default-again", *sized)

    # A run with --repeat 5 reports sem % and a confidence interval per benchmark, over its attempts.
    (row,) = first["benchmarks"]
    assert row["n"] == 5 and row["fail"] == 0 and row["sem_pct"] > 0
    assert row["stats"]["source"] == "attempts" and row["stats"]["n"] == 5
    low, high = row["stats"]["ci95"]
    assert low < row["perf"] < high

    runs = [load_run(tmp_path / name) for name in ("default", "one-thread", "default-again")]
    result = compare(runs)
    slow, same = cell(result, "matmul-fp32", 1), cell(result, "matmul-fp32", 2)
    detail = format_comparison(result)
    assert slow.regression and slow.ratio < 0.8, detail  # on 2 cores one thread is ~half as fast
    assert not same.regression, detail
    assert ("environment OMP_NUM_THREADS", ["(unset)", "1", "(unset)"]) in [
        (d.what, d.values) for d in result.differences], detail
    proc = milabox("compare", *(str(r.path) for r in runs[:2]), "--fail-on-regression")
    assert proc.returncode == 3 and "REGRESSION" in proc.stdout
    assert engine.containers() == []


@pytest.mark.engine
def test_until_sem_stops_repeating_once_the_sem_is_low_enough(engine, matmul_image, tmp_path):
    # Two positive rates a, b always have sem% = |a - b| / (a + b) * 100 < 100: so --until-sem 100
    # must stop after the second repeat, never running the third.
    doc = run_matmul(tmp_path / "run", "--repeat", "3", "--until-sem", "100")
    assert doc["benchmarks"][0]["n"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "matmul-fp32").iterdir()) == ["r0-dall", "r1-dall"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["until_sem_pct"] == 100 and manifest["status"] == "complete"
