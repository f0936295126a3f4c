"""`milabox report --html`: one self-contained file that a real browser (Debian's Chromium, headless) renders
with its tables and plots. `make test` installs Chromium (`make chromium`); without it this test fails."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys

import pytest
from PIL import Image
from runfolders import T0, write_attempt, write_manifest, write_telemetry

from milabox.reporting.html import render_html
from milabox.rundir.read import load_run


def make_runs(tmp_path):
    """Two runs of two benchmarks: repeats with per-step rates, power samples for one benchmark, one failure."""
    runs = []
    for label, speed in (("before", 1.0), ("after", 0.8)):
        run = write_manifest(tmp_path / label, ["matmul-fp32", "bert-fp32"])
        for repeat in range(3):
            steps = [speed * (100 + 5 * ((i * 7 + repeat) % 5)) for i in range(12)]
            folder = write_attempt(run, "matmul-fp32", repeat, "0", rate=sum(steps) / len(steps), steps=steps,
                                   unit="TFLOPS", peak_mb=200.0)
            write_telemetry(folder, T0 - 5, T0 + 15, 120.0 + 20 * repeat)
        write_attempt(run, "bert-fp32", 0, "0", rate=speed * 40, steps=[speed * 40 + i for i in range(8)])
        if label == "after":
            write_attempt(run, "bert-fp32", 1, "0", status="failed", cause="exit code 1: RuntimeError: boom")
        runs.append(run)
    return runs


def test_html_is_self_contained_with_three_plots(tmp_path):
    runs = [load_run(r) for r in make_runs(tmp_path)]
    page = render_html(runs)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page), "external reference"
    assert "<script" not in page and "<link" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # across runs, rate over time, power over time
    for data in images:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
        assert img.width > 300 and img.height > 200
        assert len(img.convert("RGB").getcolors(img.width * img.height)) > 20  # drawn, not a blank canvas
    for text in ("matmul-fp32", "bert-fp32", "Comparison with the first run", "REGRESSION",
                 "RuntimeError: boom", "Rate over time", "Power over time"):
        assert text in page


def test_html_without_telemetry_says_there_is_no_power(tmp_path):
    run = write_manifest(tmp_path / "run", ["m"])
    write_attempt(run, "m", rate=10.0, steps=[9.0, 11.0])
    page = render_html([load_run(run)])
    assert "No power samples" in page and len(re.findall(r"data:image/png", page)) == 2


def test_chromium_renders_the_html_report(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run `make chromium` (make test does)")
    before, after = make_runs(tmp_path)
    page = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "milabox", "report", str(before), str(after), "--html", str(page)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert page.is_file() and "matmul-fp32" in proc.stdout  # the text report is printed as well

    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    browser = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
        capture_output=True, text=True, check=False, timeout=180, env={**os.environ, "HOME": str(tmp_path)})
    assert browser.returncode == 0 and shot.is_file(), browser.stderr[-2000:]

    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2000)
    counts = {colour: n for n, colour in img.getcolors(img.width * img.height)}
    non_white = img.width * img.height - counts.get((255, 255, 255), 0)
    assert non_white > 0.05 * img.width * img.height, f"only {non_white} non-white pixels: a blank page"
    assert len(counts) > 200  # text, table shading and plot lines, not a flat page
    # The header row of the results table is dark blue (#23395d) and the bars of the first plot mid blue
    # (#3b6fb6): the CSS and the embedded images were both rendered.
    assert counts.get((0x23, 0x39, 0x5D), 0) > 1000
    assert counts.get((0x3B, 0x6F, 0xB6), 0) > 1000
