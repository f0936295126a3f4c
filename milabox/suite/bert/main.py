"""BERT masked-LM training throughput (items/s = sequences/s) from a random init on synthetic tokens.

As Milabench's bert-* (benchmarks/huggingface): BertForMaskedLM, each item ``seq_len`` random token ids with
random target tokens at every position (its synthetic MLM data: input_ids and labels, no attention mask).

Config (MILABOX_CONFIG): batch_size, seq_len, model (transformers.BertConfig keyword arguments),
precision (fp32, or tf32-fp16 = TF32 matmuls + fp16 autocast with a GradScaler), lr (default 1e-4),
seed (default 0), plus the runtime's warmup/steps/max_seconds.
"""

from __future__ import annotations

import os

import milabox_runtime as mr
from milabox_runtime.training import train_on_batches

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers (done in bench()), which reads these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

BATCHES = 4  # distinct synthetic batches, made before timing and cycled


def build_model(model_cfg: dict):
    """BertForMaskedLM from BertConfig keyword arguments (on the current default device)."""
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(**model_cfg))


def synthetic_batches(torch, count: int, batch_size: int, seq_len: int, vocab: int, device) -> list:
    """Random token batches on the device: input_ids and labels (random tokens, every position counted)."""
    return [{"input_ids": torch.randint(0, vocab, (batch_size, seq_len), device=device),
             "labels": torch.randint(0, vocab, (batch_size, seq_len), device=device)} for _ in range(count)]


def bench(run: mr.Run) -> None:
    """Train BertForMaskedLM for the run's steps; each step is one batch of ``batch_size``."""
    import torch

    cfg = run.config
    if run.precision not in ("fp32", "tf32-fp16"):
        raise ValueError(f"bert runs fp32 or tf32-fp16, not {run.precision}")
    batch_size, seq_len = int(cfg["batch_size"]), int(cfg["seq_len"])
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    with dev:  # initialise the weights on the device: no host copy of the model
        model = build_model(cfg["model"])
    config = model.config
    if seq_len > config.max_position_embeddings:
        raise ValueError(f"seq_len {seq_len} > max_position_embeddings {config.max_position_embeddings}")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.get("lr", 1e-4)))
    batches = synthetic_batches(torch, BATCHES, batch_size, seq_len, config.vocab_size, dev)

    train_on_batches(run, model, optimizer, batches, items=batch_size)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
