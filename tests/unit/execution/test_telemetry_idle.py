"""``Telemetry.sample_idle``: the run's idle baseline (``idle.jsonl``) that the report turns into idle power.

A fake backend stands in for a GPU library (none on this machine): two devices at a constant power.
"""

from __future__ import annotations

import json

import pytest

from milabox.execution.telemetry import Backend, Telemetry
from milabox.reporting.attempt_energy import idle_power
from milabox.rundir.layout import IDLE_NAME


class FakeGpus(Backend):
    """Fake: two accelerators, "0" at 30 W and "1" at 45 W."""

    name = "fake"

    def devices(self):
        return ("0", "1")

    def read(self):
        return {"0": {"power_w": 30.0}, "1": {"power_w": 45.0}}


def test_sample_idle_writes_every_device_and_the_report_reads_its_power(tmp_path):
    telemetry = Telemetry([FakeGpus()], "fake", on_warning=pytest.fail)
    assert telemetry.sample_idle(tmp_path / IDLE_NAME, seconds=0.3, interval_s=0.1) is True
    samples = [json.loads(line) for line in (tmp_path / IDLE_NAME).read_text().splitlines()]
    assert {s["device"] for s in samples} == {"0", "1"} and len(samples) >= 4  # a sample at start and at stop
    assert samples[-1]["time"] - samples[0]["time"] >= 0.25
    assert idle_power([tmp_path]) == pytest.approx({"0": 30.0, "1": 45.0})


def test_sample_idle_keeps_a_resumed_runs_baseline_and_does_nothing_when_off(tmp_path):
    telemetry = Telemetry([FakeGpus()], "fake", on_warning=pytest.fail)
    (tmp_path / IDLE_NAME).write_text("kept\n")
    assert telemetry.sample_idle(tmp_path / IDLE_NAME, seconds=0.1, interval_s=0.05) is False
    assert (tmp_path / IDLE_NAME).read_text() == "kept\n"
    assert telemetry.sample_idle(tmp_path / "off.jsonl", seconds=0.1, interval_s=0) is False
    assert Telemetry([]).sample_idle(tmp_path / "none.jsonl", seconds=0.1) is False
    assert not (tmp_path / "off.jsonl").exists() and not (tmp_path / "none.jsonl").exists()
    assert idle_power([tmp_path / "missing"]) == {}


class FakePowerless(Backend):
    """Fake: one device that reports utilization but no power (a CPU without RAPL counters)."""

    name = "fake-powerless"

    def devices(self):
        return ("cpu",)

    def read(self):
        return {"cpu": {"util_pct": 3.0}}


def test_sample_idle_stops_after_one_interval_where_no_device_reports_power(tmp_path):
    import time
    telemetry = Telemetry([FakePowerless()], "fake", on_warning=pytest.fail)
    began = time.monotonic()
    assert telemetry.sample_idle(tmp_path / IDLE_NAME, seconds=3.0, interval_s=0.1) is True
    assert time.monotonic() - began < 1.5  # not the 3 s asked for: nothing to learn without power
    assert idle_power([tmp_path]) == {}
