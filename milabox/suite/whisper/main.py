"""Whisper speech-to-text training throughput (items/s = utterances per second) from a random init.

Synthetic log-mel features (uniform in [-1, 1], the range of Whisper's normalised features) and random
transcript tokens; the model shifts the labels right to make its decoder inputs.

Config (MILABOX_CONFIG): batch_size, label_len, model (transformers.WhisperConfig keyword arguments),
precision (fp32/tf32, or an autocast precision: tf32-fp16, fp16, bf16; fp16 autocast uses a
GradScaler), lr (default 1e-4), seed (default 0), plus the runtime's warmup/steps/max_seconds.
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

BATCHES = 2  # distinct synthetic batches, made before timing and cycled (a full-size batch is 61 MB)


def synthetic_batches(torch, count: int, batch_size: int, mel_bins: int, frames: int, label_len: int,
                      vocab: int, device) -> list:
    """Random batches on the device: input_features (batch, mel_bins, frames) and labels (batch, label_len)."""
    batches = []
    for _ in range(count):
        features = torch.rand(batch_size, mel_bins, frames, device=device) * 2 - 1
        labels = torch.randint(0, vocab, (batch_size, label_len), device=device)
        batches.append({"input_features": features, "labels": labels})
    return batches


def bench(run: mr.Run) -> None:
    """Train WhisperForConditionalGeneration for the run's steps; each step is one batch of ``batch_size``."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = run.config
    if run.precision == "fp8":
        raise ValueError("whisper has no fp8 mode; use fp32, tf32, tf32-fp16, fp16 or bf16")
    batch_size, label_len = int(cfg["batch_size"]), int(cfg["label_len"])
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    config = WhisperConfig(**cfg["model"])
    if label_len > config.max_target_positions:
        raise ValueError(f"label_len {label_len} > max_target_positions {config.max_target_positions}")
    frames = 2 * config.max_source_positions  # the encoder's stride-2 convolution halves the frames
    with dev:  # initialise the weights on the device: no host copy of the model
        model = WhisperForConditionalGeneration(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.get("lr", 1e-4)))
    batches = synthetic_batches(torch, BATCHES, batch_size, config.num_mel_bins, frames, label_len,
                                config.vocab_size, dev)

    train_on_batches(run, model, optimizer, batches, items=batch_size)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
