"""GPU check (``make gpu-check``): on a machine with an NVIDIA GPU and torch, no Docker, run milabox for real.

Three phases, each one ``milabox run --runtime native --vendor cuda`` in this Python environment:

1. ``matmul-bf16`` at full size (n=8192) for at least ``--sustain-s`` measured seconds (default 30), against the
   GPU's dense bf16 peak (table below);
2. every benchmark at smoke size;
3. every benchmark at full size, one measured step after one warm-up step (``--set warmup=1 --set steps=1
   --set min_seconds=0``;
   rows too big for the GPU fail with their out-of-memory cause, which the table shows).

Then one table: benchmark, size, status, rate, unit, % of peak (bf16 matmul), mean and max GPU power (NVML, from
each attempt's ``telemetry.jsonl``). The whole check keeps to ``--budget-s`` (default 510 s, for a 9-minute slot on
one H200): a phase that would run past it is stopped as Ctrl-C stops a run (its attempt recorded as interrupted)
and the rows it did not reach read "not run". Without a GPU it says so in one line and exits 1; the exit code is 1
too when any row failed.

Options (all optional): ``--budget-s S`` (510), ``--sustain-s S`` (30), ``--out DIR`` (``runs/gpu-check-<time>``),
``--devices IDS`` (default: every GPU, one attempt).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from milabox.reporting.attempt_energy import read_samples
from milabox.rundir.layout import MANIFEST_NAME, RECORD_NAME, TELEMETRY_NAME

MILABOX = [sys.executable, "-m", "milabox"]
SUSTAINED = "matmul-bf16"
#: Dense (no 2:4 sparsity) bf16 Tensor Core peak, TFLOPS, by a substring of the name NVML/torch reports.
#: NVIDIA datasheets: H100 SXM 1,979 and H100 PCIe 1,513 TFLOPS bf16 "with sparsity; 1/2 lower without"
#: (NVIDIA H100 Tensor Core GPU datasheet); H200 SXM the same GH100 compute as H100 SXM (NVIDIA H200 Tensor
#: Core GPU datasheet, bf16 1,979 with sparsity); A100 312 dense / 624 sparse (nvidia-a100-datasheet-us-nvidia-
#: 1758950-r4-web.pdf). First match wins, so the longer names come first.
BF16_DENSE_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM5 (H100 80GB HBM3)
    ("H200", 989.0),
    ("A100", 312.0),
)


def peak_for(name: str) -> float | None:
    """The dense bf16 peak (TFLOPS) of a GPU by its reported name, or None when the table has no entry."""
    return next((peak for key, peak in BF16_DENSE_PEAK_TFLOPS if key.lower() in name.lower()), None)


def gpu_name() -> str | None:
    """The first visible NVIDIA GPU's name, or None (printing why) when there is none or torch cannot see it."""
    try:
        import torch
    except ImportError:
        print("gpu-check: no GPU check: torch is not installed in this Python environment "
              f"({sys.executable})", file=sys.stderr)
        return None
    if not torch.cuda.is_available() or torch.version.cuda is None:
        print("gpu-check: no NVIDIA GPU here (torch.cuda.is_available() is False): nothing to check",
              file=sys.stderr)
        return None
    return torch.cuda.get_device_name(0)


def run_phase(name: str, args: list[str], out: Path, deadline: float) -> Path:
    """One ``milabox run --runtime native --vendor cuda`` into ``out/name``, stopped (SIGINT) at the deadline."""
    run_dir = out / name
    command = [*MILABOX, "run", *args, "--runtime", "native", "--vendor", "cuda", "--run-dir", str(run_dir),
               "--format", "json"]
    print(f"gpu-check: {name}: {' '.join(command[2:])}", flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        proc.wait(max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        print(f"gpu-check: {name}: time budget spent: stopping it (the rest reads 'not run')", flush=True)
        proc.send_signal(signal.SIGINT)
        proc.wait()
    return run_dir


def gpu_power(folder: Path) -> tuple[float | None, float | None]:
    """Mean and max power (W) of the NVML samples of one attempt folder (None without NVML samples)."""
    path = folder / TELEMETRY_NAME
    watts = [s["power_w"] for s in (read_samples(path) if path.exists() else [])
             if s.get("backend") == "nvml" and isinstance(s.get("power_w"), (int, float))]
    return (sum(watts) / len(watts), max(watts)) if watts else (None, None)


def rows(run_dir: Path, size: str, peak: float | None) -> list[list[str]]:
    """Table rows of one phase's run folder: one per planned benchmark ("not run" where no record exists)."""
    if not (run_dir / MANIFEST_NAME).exists():
        return [["(all)", size, "not run", "-", "-", "-", "-"]]
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    out = []
    for name in manifest["benchmarks"]:
        records = sorted((run_dir / name).glob(f"*/{RECORD_NAME}")) if (run_dir / name).is_dir() else []
        if not records:
            out.append([name, size, "not run", "-", "-", "-", "-"])
        for path in records:
            record = json.loads(path.read_text())
            rate, unit = record.get("rate"), record.get("unit") or "-"
            status = record["status"] if record["status"] == "ok" else f"{record['status']}: {record.get('cause')}"
            pct = f"{100 * rate / peak:.1f}" if rate and peak and name == SUSTAINED and unit == "TFLOPS" else "-"
            mean, top = gpu_power(path.parent)
            out.append([name, size, status[:70], f"{rate:.4g}" if rate else "-", unit, pct,
                        f"{mean:.0f} (max {top:.0f})" if mean is not None else "-"])
    return out


def table(lines: list[list[str]]) -> str:
    """Plain fixed-width text of the rows under their header."""
    header = ["benchmark", "size", "status", "rate", "unit", "% of peak", "GPU power W"]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r).rstrip() for r in lines)])


def main(argv: list[str] | None = None) -> int:
    """Run the check.

    Args:
        argv: the options (default: the command line).

    Returns:
        0 when every row passed, 1 without a GPU or when a row failed or was not run.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=510.0, help="seconds for the whole check (default 510)")
    parser.add_argument("--sustain-s", type=float, default=30.0, help="measured seconds of matmul-bf16 (default 30)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the three run folders "
                        "(default runs/gpu-check-<time>)")
    parser.add_argument("--devices", default=None, help="GPU ids, e.g. 0 (default: every GPU, one attempt)")
    options = parser.parse_args(argv)
    start = time.monotonic()
    deadline = start + options.budget_s
    name = gpu_name()
    if name is None:
        return 1
    peak = peak_for(name)
    try:
        import pynvml  # noqa: F401 (the cuda vendor's telemetry reads power through it)
    except ImportError:
        print("gpu-check: warning: pynvml is missing (pip install nvidia-ml-py): no GPU power column",
              file=sys.stderr)
    out = options.out or Path("runs") / f"gpu-check-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    devices = ["--devices", options.devices] if options.devices else []
    # At most 5 s over: the loop stops at its first step past max_seconds (a step is 10 matmuls, ~15 ms on an H100).
    sustain = f"{options.sustain_s + 5:g}"
    phases = [
        ("sustained", "full", [SUSTAINED, "--size", "full", "--set", f"{SUSTAINED}.steps=1000000",
                               "--set", f"{SUSTAINED}.max_seconds={sustain}", *devices]),
        ("smoke", "smoke", ["--suite", "all", "--size", "smoke", *devices]),
        # min_seconds 0: the full sizes' 30 s of sustained measurement would not fit the device time here.
        ("full-one-step", "full", ["--suite", "all", "--size", "full", "--set", "warmup=1", "--set", "steps=1",
                                   "--set", "min_seconds=0", "--timeout", "240", *devices]),
    ]
    lines: list[list[str]] = []
    for phase, size, args in phases:
        lines += rows(run_phase(phase, args, out, deadline), size, peak)
    print(f"\nGPU: {name}; dense bf16 peak: {f'{peak:g} TFLOPS' if peak else 'not in the table'}; "
          f"{time.monotonic() - start:.0f} s; run folders in {out}\n")
    print(table(lines))
    return 0 if all(r[2] == "ok" for r in lines) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
