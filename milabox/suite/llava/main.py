"""LLaVA full fine-tuning throughput (items/s = image-text samples per second) of a random-init LLaVA model.

As Milabench's `llava-single`: LlavaForConditionalGeneration (CLIP vision tower, MLP projector, Llama text
model) built in the run's dtype (bf16 as Milabench loads it, or fp32) with every parameter trained by AdamW,
the gradient norm clipped, and the causal-LM loss on labels = input_ids (the model shifts them). A synthetic
sample is a random image and BOS + the image-token positions + ``text_len`` random text tokens, the layout
the LLaVA processor gives Milabench's "<image>\\nHuman: ...\\nAssistant: ..." prompts.

Config (MILABOX_CONFIG): batch_size, text_len, model (transformers.LlavaConfig keyword arguments, with
vision_config and text_config tables), precision (fp32, tf32 or bf16), lr (default 5e-5), max_grad_norm
(default 1.0), weight_decay (default 0.01, AdamW's), seed (default 0), plus the runtime's
warmup/steps/max_seconds.
"""

from __future__ import annotations

import os
from typing import Any

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers (done in bench()), which reads these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

BATCHES = 4  # distinct synthetic batches, made before timing and cycled
BOS = 1  # Llama's <s>, first token of every LLaVA prompt


def llava_config(model_cfg: dict[str, Any]) -> Any:
    """transformers.LlavaConfig from the config's model table (vision_config and text_config as dicts)."""
    from transformers import LlavaConfig

    return LlavaConfig(**model_cfg)


def build_model(model_cfg: dict[str, Any], dtype: Any = None) -> Any:
    """LlavaForConditionalGeneration, randomly initialised on the current device in ``dtype``."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_config(llava_config(model_cfg), dtype=dtype)


def image_tokens(config: Any) -> int:
    """Positions one image fills in the prompt: a feature per patch (plus CLS under the "full" strategy)."""
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    return patches + (1 if config.vision_feature_select_strategy == "full" else 0)


def synthetic_batches(torch: Any, config: Any, batch_size: int, text_len: int, dtype: Any, device: Any) -> list:
    """Random images and prompts: BOS, the image token repeated for every image feature, then text tokens."""
    vision, text = config.vision_config, config.text_config
    special = {config.image_token_index, BOS, text.pad_token_id}
    n_image = image_tokens(config)
    if 1 + n_image + text_len > text.max_position_embeddings:
        raise ValueError(f"1 + {n_image} image tokens + text_len {text_len} > max_position_embeddings "
                         f"{text.max_position_embeddings}")
    batches = []
    for _ in range(BATCHES):
        words = torch.randint(0, text.vocab_size, (batch_size, text_len), device=device)
        for token in special:  # text tokens must not be read as image (or pad) positions
            if token is not None:
                words = torch.where(words == token, torch.full_like(words, 2), words)
        ids = torch.cat([torch.full((batch_size, 1), BOS, device=device),
                         torch.full((batch_size, n_image), config.image_token_index, device=device), words], dim=1)
        pixels = torch.randn(batch_size, vision.num_channels, vision.image_size, vision.image_size,
                             device=device, dtype=dtype)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels,
                        "labels": ids.clone()})
    return batches


def bench(run: mr.Run) -> None:
    """Fine-tune every LLaVA parameter for the run's steps; each step is one batch of ``batch_size`` samples."""
    import torch

    cfg = run.config
    if run.precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"llava trains in fp32, tf32 or bf16 (pure, as Milabench does), not {run.precision}")
    batch_size, text_len = int(cfg["batch_size"]), int(cfg["text_len"])
    max_grad_norm = float(cfg.get("max_grad_norm", 1.0))
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    with dev:  # initialise the weights on the device, in the run's dtype: no host copy of a 7B model
        model = build_model(dict(cfg["model"]), dtype=run.dtype)
    model.train()
    run.emit("parameters", total=sum(p.numel() for p in model.parameters()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.get("lr", 5e-5)),
                                  weight_decay=float(cfg.get("weight_decay", 0.01)))
    batches = synthetic_batches(torch, model.config, batch_size, text_len, run.dtype, dev)

    for step in run.steps(items=batch_size):
        batch = batches[step % BATCHES]
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch, use_cache=False).loss  # training keeps no KV cache
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        run.loss(loss)  # .item() here also checks for divergence every step


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
