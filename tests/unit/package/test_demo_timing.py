"""The timing table `make demo` ends with (scripts/demo_timing.py)."""

from __future__ import annotations

import subprocess
import sys

from helpers import PROJECT

SCRIPT = PROJECT / "scripts" / "demo_timing.py"


def test_the_table_splits_the_build_and_merges_a_phase_reached_twice(tmp_path):
    phases = tmp_path / "phases.txt"
    phases.write_text("venv 100.0 117.0\nengine 100.0 140.0\nengine 140.5 140.6\nbase 140.6 142.0\n"
                      "build 142.0 200.0\nrun 200.0 300.0\n")
    log = tmp_path / "build.log"
    log.write_text("  built milabox/runtime:cpu-0.1.0 0123abcd in 40.0s, 2/29 steps cached\n"
                   "  built milabox/bert:cpu-0.1.0 4567abcd in 2.0s, 1/15 steps cached\n")
    out = subprocess.run([sys.executable, str(SCRIPT), str(phases), str(log)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    rows = {line.split()[0] if not line.startswith(("runtime", "benchmark")) else " ".join(line.split()[:2]):
            line.split()[-1] for line in out[2:]}
    assert rows["engine"] == "40.6" and rows["runtime image"] == "40.0" and rows["benchmark images"] == "18.0"
    assert rows["run"] == "100.0" and rows["total"] == "200.0"


def test_no_phases_says_so(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none"), str(tmp_path / "none.log")],
                         capture_output=True, text=True, check=True).stdout
    assert "no demo phases recorded" in out
