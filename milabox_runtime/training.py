"""The supervised training loop that Hugging Face-style benchmarks share (model(**batch).loss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def train_on_batches(run: Any, model: Any, optimizer: Any, batches: Sequence[dict], items: float) -> None:
    """Train ``model`` for the run's steps, cycling through pre-made batches.

    Each step: zero the gradients, forward under the run's autocast, backward through a GradScaler (active
    only for fp16, whose gradients underflow without loss scaling), optimizer step, and the loss checked
    for divergence (``run.loss`` fails the benchmark on NaN or inf).

    Args:
        run: the entered :class:`milabox_runtime.Run`.
        model: a module whose output has a ``.loss`` when called with ``**batch``.
        optimizer: its optimizer.
        batches: keyword-argument batches already on the device (made before timing).
        items: items counted per step (e.g. the batch size).
    """
    import torch

    scaler = torch.amp.GradScaler(run.device_type, enabled=run.autocast_dtype == torch.float16)
    for step in run.steps(items=items):
        batch = batches[step % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        with run.autocast():
            loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        run.loss(loss)  # .item() here also checks for divergence every step
