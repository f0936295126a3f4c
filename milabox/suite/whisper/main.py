"""Whisper audio-classification training throughput (items/s = 30 s clips per second) from a random init.

As Milabench's ``whisper`` (benchmarks/huggingface, AutoModelForAudioClassification):
WhisperForAudioClassification = Whisper's encoder, a linear projector, mean pooling over time and a linear
classifier, trained with cross-entropy on one random class label per clip. Synthetic log-mel features
(uniform in [-1, 1], the range of Whisper's normalised features) are made before timing in host memory; each
step copies its batch to the device (as Milabench's DataLoader batches are), then forward, backward, step.

Config (MILABOX_CONFIG): batch_size, model (transformers.WhisperConfig keyword arguments: num_labels,
classifier_proj_size and the encoder's), precision (fp32/tf32, or an autocast precision: tf32-fp16, fp16,
bf16; fp16 autocast uses a GradScaler), lr (default 1e-4), seed (default 0), plus warmup/steps/max_seconds.
"""

from __future__ import annotations

import os

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers (done in bench()), which reads these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

BATCHES = 2  # distinct synthetic batches, made before timing and cycled (a full-size batch is 61 MB)


def build_model(model_cfg: dict):
    """WhisperForAudioClassification from WhisperConfig keyword arguments (on the current default device)."""
    from transformers import WhisperConfig, WhisperForAudioClassification

    return WhisperForAudioClassification(WhisperConfig(**model_cfg))


def frames(config) -> int:
    """Log-mel frames an item has: the encoder's stride-2 convolution halves them to max_source_positions."""
    return 2 * config.max_source_positions


def synthetic_batches(torch, count: int, batch_size: int, mel_bins: int, n_frames: int, labels: int) -> list:
    """Random host batches: input_features (batch, mel_bins, frames) and labels (batch,) in [0, labels)."""
    return [{"input_features": torch.rand(batch_size, mel_bins, n_frames) * 2 - 1,
             "labels": torch.randint(0, labels, (batch_size,))} for _ in range(count)]


def bench(run: mr.Run) -> None:
    """Train WhisperForAudioClassification for the run's steps; each step is one batch of ``batch_size``."""
    import torch

    cfg = run.config
    if run.precision == "fp8":
        raise ValueError("whisper has no fp8 mode; use fp32, tf32, tf32-fp16, fp16 or bf16")
    batch_size = int(cfg["batch_size"])
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    with dev:  # initialise the weights on the device: no host copy of the model
        model = build_model(cfg["model"])
    config = model.config
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.get("lr", 1e-4)))
    batches = synthetic_batches(torch, BATCHES, batch_size, config.num_mel_bins, frames(config), config.num_labels)
    run.emit("whisper", parameters=sum(p.numel() for p in model.parameters()), frames=frames(config),
             num_labels=config.num_labels)

    scaler = torch.amp.GradScaler(run.device_type, enabled=run.autocast_dtype == torch.float16)
    for step in run.steps(items=batch_size):
        batch = {k: v.to(dev) for k, v in batches[step % BATCHES].items()}  # host to device, as a DataLoader's
        optimizer.zero_grad(set_to_none=True)
        with run.autocast():
            loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        run.loss(loss)  # .item() here also checks for divergence every step


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
