"""T5 seq2seq training throughput (items/s = source/target pairs per second) from a random init.

Config (MILABOX_CONFIG): batch_size, source_len, target_len, model (transformers.T5Config keyword
arguments), precision (fp32/tf32, or an autocast precision: tf32-fp16, fp16, bf16; fp16 autocast
uses a GradScaler), lr (default 1e-4), seed (default 0), plus the runtime's warmup/steps/max_seconds.
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


def synthetic_batches(torch, count: int, batch_size: int, source_len: int, target_len: int, vocab: int,
                      device) -> list:
    """Random token batches on the device: encoder input_ids, an all-ones attention mask, decoder labels.

    The model builds its decoder inputs by shifting the labels right (decoder_start_token_id first).
    """
    batches = []
    for _ in range(count):
        ids = torch.randint(0, vocab, (batch_size, source_len), device=device)
        labels = torch.randint(0, vocab, (batch_size, target_len), device=device)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return batches


def bench(run: mr.Run) -> None:
    """Train T5ForConditionalGeneration for the run's steps; each step is one batch of ``batch_size``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = run.config
    if run.precision == "fp8":
        raise ValueError("t5 has no fp8 mode; use fp32, tf32, tf32-fp16, fp16 or bf16")
    batch_size = int(cfg["batch_size"])
    source_len, target_len = int(cfg["source_len"]), int(cfg["target_len"])
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    config = T5Config(**cfg["model"])
    with dev:  # initialise the weights on the device: no host copy of the model
        model = T5ForConditionalGeneration(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.get("lr", 1e-4)))
    batches = synthetic_batches(torch, BATCHES, batch_size, source_len, target_len, config.vocab_size, dev)

    train_on_batches(run, model, optimizer, batches, items=batch_size)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
