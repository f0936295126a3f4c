"""On the real engine: ``milabox run matmul-fp32 --devices 0,1`` on the CPU vendor reports both devices' rates
and the node's rate, their sum."""

from __future__ import annotations

import functools
import json

import helpers
import pytest

milabox = functools.partial(helpers.milabox, timeout=180)


@pytest.mark.engine
def test_two_cpu_devices_report_their_rates_and_the_node_rate(engine, cpu_images, tmp_path):
    folder = tmp_path / f"run-{tmp_path.name}"
    proc = milabox("run", "matmul-fp32", "--vendor", "cpu", "--size", "smoke", "--devices", "0,1",
                   "--run-dir", str(folder), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["benchmarks"]
    assert row["fail"] == 0 and row["devices"] == 2 and sorted(row["device_rates"]) == ["0", "1"]
    assert all(rate > 0 for rate in row["device_rates"].values())
    assert row["node_rate"] == pytest.approx(sum(row["device_rates"].values()))
    assert row["perf"] == pytest.approx(row["node_rate"]) and row["stats"]["source"] == "batches"
    table = milabox("report", str(folder))
    assert table.returncode == 0, table.stderr
    assert "Devices of matmul-fp32: 0 = " in table.stdout and "; node = " in table.stdout
