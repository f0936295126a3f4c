"""milabox_runtime: the small in-container runtime every milabox benchmark imports.

It reads the host's environment (MILABOX_CONFIG, MILABOX_RESULTS, MILABOX_DEVICE), runs warm-up
and measured steps with device-synchronised timing, applies validity gates (non-finite loss, no
rate) and writes events.jsonl as docs/results-format.md describes. Standard library only at
import time; torch (or jax, in a jax run) is imported when first needed.

Typical benchmark::

    import milabox_runtime as mr

    def bench(run: mr.Run) -> None:
        cfg, dev = run.config, run.device
        run.seed(0)
        ...
        for step in run.steps(items=cfg["batch_size"]):
            with run.autocast():
                loss = ...
            run.loss(loss)

    if __name__ == "__main__":
        mr.main(bench)          # exits 0 only if a rate was measured and nothing failed

A JAX benchmark (a ``framework = "jax"`` group) says so, and hands each step's results to the clock, which
waits for them (``jax.block_until_ready``) before it is read: JAX dispatches work asynchronously::

    def bench(run: mr.Run) -> None:
        state = ...
        for step in run.steps(items=cfg["num_envs"] * cfg["num_steps"]):
            state, loss = train_step(state)
            run.ready((state, loss))    # required in every measured step of a jax run
            run.loss(loss)              # NaN/inf check, as for torch

    if __name__ == "__main__":
        mr.main(bench, framework="jax")  # device, meta and peak memory come from jax; torch is never imported

A benchmark spanning several devices (plan ``all_devices``) calls
``mr.distributed.launch_if_needed()`` first in ``__main__`` (torchrun, one process a device) and
``mr.distributed.init_process_group(run)`` in its body; only global rank 0 writes events.
"""

from . import distributed
from .errors import BenchmarkFailure, NonFiniteLoss, NoRate, Terminated
from .events import EVENTS_NAME
from .precision import PRECISIONS
from .run import LOOP_DEFAULTS, Run, main

__all__ = ["EVENTS_NAME", "LOOP_DEFAULTS", "PRECISIONS", "BenchmarkFailure", "NoRate",
           "NonFiniteLoss", "Run", "Terminated", "distributed", "main"]
