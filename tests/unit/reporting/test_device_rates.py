"""Node throughput of concurrent per-device batches: the sum of the devices' rates, per-device energy, the idle
baseline, and compare's suite score agreeing with the report's. Run folders come from tests/runfolders.py; the
``concurrent`` key is added to their records as milabox.execution.attempt writes it."""

from __future__ import annotations

import json

import pytest
from runfolders import T0, write_attempt, write_manifest, write_telemetry

from milabox.reporting.compare import compare
from milabox.reporting.formats import format_report
from milabox.reporting.summary import summarize
from milabox.rundir.layout import IDLE_NAME, RECORD_NAME, TELEMETRY_NAME
from milabox.rundir.read import load_run


def _attempt(run, bench, repeat, device, rate, concurrent=("0", "1"), **kw):
    """An attempt folder whose record names its batch (``concurrent``) when ``concurrent`` is not None."""
    failed = rate is None
    folder = write_attempt(run, bench, repeat, device, rate=rate, status="failed" if failed else "ok",
                           cause="exit code 1" if failed else None, **kw)
    if concurrent is not None:
        record = json.loads((folder / RECORD_NAME).read_text())
        record.update(concurrent=list(concurrent), batch_started="2026-11-24T10:00:00+00:00",
                      batch_ended="2026-11-24T10:00:12+00:00")
        (folder / RECORD_NAME).write_text(json.dumps(record))
    return folder


def _samples(path, watts, start=T0, stop=T0 + 10):
    """A telemetry file of one sample a second from start to stop, constant power per device (``watts``)."""
    lines = [{"time": start + t, "device": d, "backend": "nvml", "power_w": w, "energy_j": w * t}
             for t in range(int(stop - start) + 1) for d, w in watts.items()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _batches(path, rates, concurrent=("0", "1")):
    """One benchmark ``m``; ``rates`` is one (rate of device 0, rate of device 1) per repeat, None = failed."""
    run = write_manifest(path, ["m"], devices=["0", "1"])
    for repeat, pair in enumerate(rates):
        for device, rate in zip(("0", "1"), pair, strict=True):
            _attempt(run, "m", repeat, device, rate, concurrent)
    return run


def test_node_rate_is_the_sum_of_a_batch_and_perf_the_mean_over_repeats(tmp_path):
    summary = summarize(load_run(_batches(tmp_path / "run", [(10.0, 12.0), (11.0, 13.0)])))
    (row,) = summary.benchmarks
    assert row.perf == pytest.approx(23.0) and row.node_rate == pytest.approx(23.0)  # (22 + 24) / 2
    assert row.score == pytest.approx(23.0) and row.multiplier == 1  # D is not multiplied in again
    assert row.stats.source == "batches" and row.stats.n == 2  # the unit of replication is the batch
    assert row.stats.values == pytest.approx([22.0, 24.0])
    assert row.device_rates == pytest.approx({"0": 10.5, "1": 12.5})
    assert row.spread == pytest.approx(10.5 / 11.5) and row.devices == 2

    doc = json.loads(format_report(summary, "json"))["benchmarks"][0]
    assert doc["device_rates"] == pytest.approx({"0": 10.5, "1": 12.5}) and doc["node_rate"] == pytest.approx(23.0)
    table = format_report(summary, "table")
    header, _, line = table.splitlines()[:3]
    assert header.split()[:5] == ["benchmark", "n", "fail", "devices", "spread"]
    assert line.split()[:5] == ["m", "4", "0", "2", "0.91"]
    assert "Devices of m: 0 = 10.50, 1 = 12.50; node = 23.00 items/s" in table


def test_a_failed_device_counts_zero_in_its_batch(tmp_path):
    partly = summarize(load_run(_batches(tmp_path / "partly", [(10.0, 10.0), (10.0, None)])))
    (row,) = partly.benchmarks
    assert row.perf == pytest.approx(15.0) and row.score == pytest.approx(15.0)  # (20 + 10) / 2, both batches ok
    assert row.fail == 1 and any("1 batch(es) partly failed" in w for w in row.warnings)
    whole = summarize(load_run(_batches(tmp_path / "whole", [(10.0, 10.0), (None, None)])))
    assert whole.benchmarks[0].perf == pytest.approx(20.0) and whole.benchmarks[0].score == pytest.approx(10.0)
    clean = summarize(load_run(_batches(tmp_path / "clean", [(10.0, 10.0), (10.0, 10.0)])))
    assert clean.score == pytest.approx(20.0) and clean.score > partly.score > whole.benchmarks[0].score


def test_records_without_concurrent_keep_perf_per_device_times_d(tmp_path):
    summary = summarize(load_run(_batches(tmp_path / "old", [(10.0, 12.0), (11.0, 13.0)], concurrent=None)))
    (row,) = summary.benchmarks
    assert row.perf == pytest.approx(11.5) and row.multiplier == 2
    assert row.score == pytest.approx(23.0) and row.node_rate == pytest.approx(23.0)
    assert row.stats.source == "attempts" and row.stats.n == 4


def test_energy_counts_only_each_attempts_devices_and_the_host_once(tmp_path):
    run = write_manifest(tmp_path / "gpu", ["m"], vendor="cuda", devices=["0", "1"])
    for device in ("0", "1"):  # each file also holds the other device at 300 W: it must not count
        _samples(_attempt(run, "m", 0, device, 10.0) / TELEMETRY_NAME, {device: 100.0, str(1 - int(device)): 300.0})
    energy = summarize(load_run(run)).benchmarks[0].energy
    assert energy.energy_kj == pytest.approx(2.0) and energy.mean_power_w == pytest.approx(200.0)  # 2 x 100 W x 10 s
    assert energy.items_per_j == pytest.approx(20.0 / 200.0) and energy.net_energy_kj is None  # no idle.jsonl

    cpu = write_manifest(tmp_path / "cpu", ["m"], devices=["0", "1"])
    for device in ("0", "1"):  # the CPU vendor: every attempt's file samples the same host
        write_telemetry(_attempt(cpu, "m", 0, device, 10.0), T0, T0 + 10, 80.0)
    energy = summarize(load_run(cpu)).benchmarks[0].energy
    assert energy.mean_power_w == pytest.approx(80.0) and energy.energy_kj == pytest.approx(0.8)


def test_idle_power_and_energy_above_idle(tmp_path):
    run = write_manifest(tmp_path / "gpu", ["m"], vendor="cuda", devices=["0", "1"])
    for device in ("0", "1"):
        _samples(_attempt(run, "m", 0, device, 10.0) / TELEMETRY_NAME, {device: 100.0})
    _samples(run / IDLE_NAME, {"0": 30.0, "1": 40.0}, T0 - 20, T0 - 15)
    summary = summarize(load_run(run))
    assert summary.idle_power_w == pytest.approx({"0": 30.0, "1": 40.0})
    energy = summary.benchmarks[0].energy
    assert energy.energy_kj == pytest.approx(2.0) and energy.net_energy_kj == pytest.approx(2.0 - 0.7)
    table = format_report(summary, "table")
    assert "net kJ" in table and "Idle power: 0 = 30.0 W, 1 = 40.0 W" in table
    doc = json.loads(format_report(summary, "json"))
    assert doc["idle_power_w"] == pytest.approx({"0": 30.0, "1": 40.0})
    assert doc["benchmarks"][0]["energy"]["net_energy_kj"] == pytest.approx(1.3)


def test_compare_suite_score_is_the_reports_score(tmp_path):
    # Batches with a failed device, and an older-style benchmark scored perf x D: both rules planted.
    runs = []
    for label, scale in (("a", 1.0), ("b", 0.8)):
        run = write_manifest(tmp_path / label, ["m", "k"], devices=["0", "1"])
        for repeat, pair in enumerate([(10.0, 12.0), (11.0, None), (10.5, 12.5)]):
            for device, rate in zip(("0", "1"), pair, strict=True):
                _attempt(run, "m", repeat, device, rate and rate * scale)
        for repeat, rate in enumerate((5.0, 6.0, None)):
            for device in ("0", "1"):
                _attempt(run, "k", repeat, device, rate and rate * scale, concurrent=None, weight=2.0)
        runs.append(load_run(run))
    (suite,) = compare(runs).suite
    for score, run, ci in ((suite.score_a, runs[0], suite.ci_a), (suite.score_b, runs[1], suite.ci_b)):
        assert score == pytest.approx(summarize(run).score)
        assert ci[0] <= score <= ci[1]
    m, k = summarize(runs[0]).benchmarks
    assert m.score == pytest.approx((22.0 + 11.0 + 23.0) / 3) and k.score == pytest.approx(5.5 * 2 * 4 / 6)
