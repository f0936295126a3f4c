"""Reformer masked-LM training throughput (items/s = sequences/s) from a random init on synthetic tokens.

As Milabench's Hugging Face `reformer` benchmark: ReformerForMaskedLM (LSH and local attention, reversible
layers, axial position embeddings), random input tokens and random labels on every position, Adam.

Config (MILABOX_CONFIG): batch_size, seq_len (the product of model.axial_pos_shape, a multiple of the
attention chunk lengths), model (transformers.ReformerConfig keyword arguments), precision (fp32/tf32, or an
autocast precision: tf32-fp16, fp16, bf16; fp16 autocast uses a GradScaler), lr (default 1e-3, Adam as
Milabench), seed (default 0), plus the runtime's warmup/steps/max_seconds.
"""

from __future__ import annotations

import math
import os
from typing import Any

import milabox_runtime as mr
from milabox_runtime.training import train_on_batches

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers (done in bench()), which reads these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

BATCHES = 4  # distinct synthetic batches, made before timing and cycled


def build_model(model_cfg: dict[str, Any]) -> Any:
    """ReformerForMaskedLM from ReformerConfig keyword arguments, randomly initialised on the current device."""
    from transformers import ReformerConfig, ReformerForMaskedLM

    return ReformerForMaskedLM(ReformerConfig(**model_cfg))


def check_lengths(config: Any, seq_len: int) -> None:
    """Reformer trains only on sequences its axial position embeddings and attention chunks tile exactly."""
    if config.axial_pos_embds and math.prod(config.axial_pos_shape) != seq_len:
        raise ValueError(f"seq_len {seq_len} must equal the product of axial_pos_shape {config.axial_pos_shape}")
    for name in ("local_attn_chunk_length", "lsh_attn_chunk_length"):
        if seq_len % getattr(config, name):
            raise ValueError(f"seq_len {seq_len} is not a multiple of {name} {getattr(config, name)}")


def bench(run: mr.Run) -> None:
    """Train ReformerForMaskedLM for the run's steps; each step is one batch of ``batch_size`` sequences."""
    import torch

    cfg = run.config
    if run.precision == "fp8":
        raise ValueError("reformer has no fp8 mode; use fp32, tf32, tf32-fp16, fp16 or bf16")
    batch_size, seq_len = int(cfg["batch_size"]), int(cfg["seq_len"])
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    with dev:  # initialise the weights on the device
        model = build_model(dict(cfg["model"]))
    check_lengths(model.config, seq_len)
    model.train()
    run.emit("parameters", total=sum(p.numel() for p in model.parameters()))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.get("lr", 1e-3)))
    vocab = model.config.vocab_size
    batches = [{"input_ids": torch.randint(0, vocab, (batch_size, seq_len), device=dev),
                "labels": torch.randint(0, vocab, (batch_size, seq_len), device=dev)} for _ in range(BATCHES)]

    train_on_batches(run, model, optimizer, batches, items=batch_size)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
