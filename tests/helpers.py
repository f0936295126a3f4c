"""Helpers the test files share (importable as `helpers`: pyproject's pytest `pythonpath` holds tests/).

Where the project and its golden files are, the `milabox` command line run as a user runs it, the one-line
error check, the CPU vendor, quiet and recording build reporters, and the planted two-node DDP benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from milabox.definitions.benchmarks import all_benchmarks, select
from milabox.definitions.vendors import get_vendor
from milabox.images.build import build
from milabox.images.sources import discover

PROJECT = Path(__file__).resolve().parent.parent  # the checkout: pyproject.toml, README.md, milabox/
GOLDEN = Path(__file__).resolve().parent / "golden"
MILABOX = [sys.executable, "-m", "milabox"]
CPU = get_vendor("cpu")


def milabox(*args: str, env: dict | None = None, docker_host: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m milabox ARGS` in this environment (plus ENV, and DOCKER_HOST when given), output captured."""
    extra = {**(env or {}), **({"DOCKER_HOST": docker_host} if docker_host else {})}
    return subprocess.run([*MILABOX, *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **extra}, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and errors[0].startswith("milabox: error: ")
    assert proc.stderr.strip().splitlines()[-1] == errors[0]  # progress lines may come before, nothing after
    for fragment in fragments:
        assert fragment in errors[0]


def cell(comparison, bench, run_index):
    (row,) = [r for r in comparison.rows if r.name == bench]
    return row.cells[run_index]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Quiet:
    def begin(self, image, log_path): ...
    def step(self, image, step, steps, instruction): ...
    def line(self, image, text): ...
    def end(self, result): ...


class Recorder:
    """A build reporter that keeps what it is told."""

    def __init__(self):
        self.steps, self.results = [], []

    def begin(self, image, log_path):
        self.log_path = log_path

    def step(self, image, step, steps, instruction):
        self.steps.append((image, step, steps, instruction))

    def line(self, image, text):
        pass

    def end(self, result):
        self.results.append(result)


def _build(engine, names, log_dir):
    reporter = Recorder()
    results = build(engine, select(names, all_benchmarks()), CPU, discover(), reporter, log_dir)
    return results, reporter


# Two processes in all (one a node), a linear model: the test is about the rendezvous, not the model.
DDP_MAIN = '''\
"""A tiny DDP training across every process of the job (the multi-node smoke benchmark of the tests)."""
import milabox_runtime as mr


def bench(run):
    import torch
    from torch.nn.parallel import DistributedDataParallel

    rank, world, _ = mr.distributed.init_process_group(run)
    try:
        run.seed(0)  # the same initial weights on every rank
        model = DistributedDataParallel(torch.nn.Linear(16, 4))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        run.seed(1 + rank)  # each rank its own data
        x, y = torch.randn(8, 16), torch.randn(8, 4)
        for _ in run.steps(items=8 * world):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # DDP all-reduces the gradients across the two containers here
            optimizer.step()
            run.loss(loss)
        weights = [float(p.detach().sum()) for p in model.parameters()]
        run.emit("ddp", world_size=world, weights=weights)
    finally:
        mr.distributed.destroy_process_group()


if __name__ == "__main__":
    mr.distributed.launch_if_needed()
    mr.main(bench)
'''
def planted_toml(description: str, smoke: dict, full: dict | None = None, plan: str | None = None,
                 variants: dict[str, str] | None = None) -> str:
    """The benchmark.toml of a benchmark a test plants: family "test", unit items/s, the sizes' parameters (full:
    the smoke ones unless given), an optional group plan, and variants named with their plan."""
    lines = [f'description = "{description}"', 'family = "test"', 'unit = "items/s"']
    lines += [f'plan = "{plan}"'] if plan else []
    for size, params in (("smoke", smoke), ("full", full or smoke)):
        lines += [f"[sizes.{size}]", *(f"{key} = {value}" for key, value in params.items())]
    for name, variant_plan in (variants or {}).items():
        lines += [f"[variants.{name}]", f'plan = "{variant_plan}"']
    return "\n".join(lines) + "\n"


DDP_TOML = planted_toml("planted two-node DDP smoke", {"warmup": 1, "steps": 5, "timeout_s": 180}, plan="all_devices")


def full_size_workload(row: str, module: str = "main") -> tuple[ModuleType, dict]:
    """A suite row's workload module (imported from its folder, as its own module) and its [sizes.full] config:
    what the meta-device parameter-count tests build the full-size models from."""
    bench = all_benchmarks()[row]
    name = f"_milabox_suite_{bench.group.replace('-', '_')}_{module}"
    spec = importlib.util.spec_from_file_location(name, bench.folder / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod, bench.config("full")


def within_1_percent(count: int, reference: int) -> bool:
    """A parameter count within 1 % of the named model's published one."""
    return abs(count - reference) <= 0.01 * reference
