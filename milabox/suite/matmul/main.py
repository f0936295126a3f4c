"""Square matrix multiply throughput (TFLOPS): the device's raw matmul speed at one precision.

Config (MILABOX_CONFIG): n (matrix size), repeat_per_step (matmuls timed as one step, default 1),
precision (fp32, tf32, fp16 or bf16; tf32 = float32 inputs with TF32 allowed, which the runtime
sets), seed (default 0), plus the runtime's warmup/steps/max_seconds.
"""

from __future__ import annotations

import milabox_runtime as mr


def bench(run: mr.Run) -> None:
    """Time ``repeat_per_step`` n x n matmuls a step; each step's items are its TFLOP."""
    import torch

    cfg = run.config
    n = int(cfg["n"])
    repeat = int(cfg.get("repeat_per_step", 1))
    if n < 1 or repeat < 1:
        raise ValueError(f"n and repeat_per_step must be >= 1, not {n} and {repeat}")
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    # Created on the device, in the benchmark's dtype: no host transfer or cast inside the timed loop.
    a = torch.randn(n, n, device=dev, dtype=run.dtype)
    b = torch.randn(n, n, device=dev, dtype=run.dtype)
    out = torch.empty(n, n, device=dev, dtype=run.dtype)
    tflop_per_step = 2 * n**3 * repeat / 1e12
    with torch.inference_mode():
        for _ in run.steps(items=tflop_per_step):
            for _ in range(repeat):
                torch.matmul(a, b, out=out)  # out= reuses one buffer: no allocator noise
    # Entries are sums of n products of N(0,1) values, ~sqrt(n): never inf in these dtypes.
    if not bool(torch.isfinite(out).all()):
        raise RuntimeError("matmul produced non-finite values")
    run.emit("matmul", n=n, repeat_per_step=repeat, dtype=str(run.dtype).removeprefix("torch."))


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "TFLOPS", "repeat_per_step": 1})
