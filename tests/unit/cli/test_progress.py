"""What a person watching a long run sees: which benchmark, which repeat, elapsed and estimated time left."""

from __future__ import annotations

from milabox.cli.display import RunDisplay
from milabox.definitions.benchmarks import all_benchmarks
from milabox.execution.plan import Attempt


def test_run_display_names_benchmark_repeat_and_estimates_time_left(capsys):
    benches = all_benchmarks()
    matmul, bert = benches["matmul-fp32"], benches["bert-fp32"]
    plan = [Attempt(matmul, 0, ()), Attempt(matmul, 1, ()), Attempt(bert, 0, ()), Attempt(bert, 1, ())]
    display = RunDisplay()
    display.planned(plan)

    display.attempt_started(1, 4, plan[0])
    display.attempt_ended(1, 4, plan[0], {"status": "ok", "wall_s": 10.0, "rate": 0.17, "unit": "TFLOPS"})
    display.attempt_started(2, 4, plan[1])
    display.attempt_ended(2, 4, plan[1], {"status": "failed", "wall_s": 30.0, "cause": "exit code 1: boom"})
    display.attempt_started(3, 4, plan[2])
    display.attempt_ended(3, 4, plan[2], {"status": "ok", "wall_s": 50.0, "rate": 40.0, "unit": "items/s"})
    display.attempt_started(4, 4, plan[3])
    lines = capsys.readouterr().err.splitlines()

    assert lines[0].startswith("[1/4] matmul-fp32 repeat 1/2: running (") and "estimating time left" in lines[0]
    assert lines[1] == "[1/4] matmul-fp32 repeat 1/2: ok in 10.0s, 0.17 TFLOPS"
    # three attempts left, only matmul's 10 s known: 3 x 10 s
    assert lines[2].startswith("[2/4] matmul-fp32 repeat 2/2: running") and "about 30s left" in lines[2]
    assert lines[3] == "[2/4] matmul-fp32 repeat 2/2: failed: exit code 1: boom"
    # bert has no attempt yet: both of its attempts at the mean of all so far, (10 + 30) / 2 = 20 s
    assert "about 40s left" in lines[4] and "bert-fp32 repeat 1/2" in lines[4]
    # bert's own attempt took 50 s: its last one is expected to take as long
    assert lines[6].startswith("[4/4] bert-fp32 repeat 2/2: running") and "about 50s left" in lines[6]


def test_run_display_drops_repeats_skipped_by_until_sem(capsys):
    matmul = all_benchmarks()["matmul-fp32"]
    plan = [Attempt(matmul, r, ()) for r in range(4)]
    display = RunDisplay()
    display.planned(plan)
    display.attempt_started(1, 4, plan[0])
    display.attempt_ended(1, 4, plan[0], {"status": "ok", "wall_s": 5.0, "rate": 1.0, "unit": "TFLOPS"})
    display.attempt_started(2, 4, plan[1])
    display.attempt_ended(2, 4, plan[1], {"status": "ok", "wall_s": 5.0, "rate": 1.0, "unit": "TFLOPS"})
    display.repeats_skipped(matmul, 2, 0.8, 2)
    assert display.pending == [] and display.estimate_left(display.pending) == 0
    assert capsys.readouterr().err.splitlines()[-1] == (
        "matmul-fp32: sem 0.8% after 2 repeat(s) is below --until-sem; 2 attempt(s) skipped")
