"""LoRA fine-tuning throughput (tokens/s = trained tokens per second) of a random-init Llama model with peft.

The base model is built in the run's dtype (bf16 as in Milabench's torchtune recipe, or fp32), frozen, and
wrapped with LoRA adapters in the same dtype; AdamW trains the adapters on the causal-LM loss of synthetic
token sequences (labels = inputs; the model shifts them).

Config (MILABOX_CONFIG): batch_size, seq_len, gradient_checkpointing (default false), lora = {r, alpha,
target_modules, dropout (default 0)}, model (transformers.LlamaConfig keyword arguments), precision (fp32
or bf16), lr (default 3e-4), weight_decay (default 0.01), seed (default 0), plus the runtime's
warmup/steps/max_seconds.
"""

from __future__ import annotations

import os
import warnings

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers and peft (done in bench()), which read these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# peft 0.21 reads a transformers attribute deprecated in transformers 5: noise in every run's log.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

BATCHES = 4  # distinct synthetic batches, made before timing and cycled


def bench(run: mr.Run) -> None:
    """Train the LoRA adapters for the run's steps; each step is one batch of ``batch_size`` sequences."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = run.config
    if run.precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"llm-lora trains in fp32, tf32 or bf16 (pure, as torchtune does), not {run.precision}")
    batch_size, seq_len = int(cfg["batch_size"]), int(cfg["seq_len"])
    lora = dict(cfg["lora"])
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    config = LlamaConfig(**cfg["model"])
    if seq_len > config.max_position_embeddings:
        raise ValueError(f"seq_len {seq_len} > max_position_embeddings {config.max_position_embeddings}")
    with dev:  # initialise the weights on the device, in the run's dtype: no host copy of an 8B model
        base = AutoModelForCausalLM.from_config(config, dtype=run.dtype)
    if cfg.get("gradient_checkpointing", False):
        # Non-reentrant checkpointing works with a frozen base (no input that requires grad is needed).
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    adapters = LoraConfig(r=int(lora["r"]), lora_alpha=int(lora["alpha"]),
                          lora_dropout=float(lora.get("dropout", 0.0)),
                          target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    # autocast_adapter_dtype=False keeps the adapters in the base's dtype (bf16 like torchtune), not fp32.
    model = get_peft_model(base, adapters, autocast_adapter_dtype=False)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    run.emit("parameters", trainable=sum(p.numel() for p in trainable),
             total=sum(p.numel() for p in model.parameters()))
    optimizer = torch.optim.AdamW(trainable, lr=float(cfg.get("lr", 3e-4)),
                                  weight_decay=float(cfg.get("weight_decay", 0.01)))
    batches = [torch.randint(0, config.vocab_size, (batch_size, seq_len), device=dev) for _ in range(BATCHES)]

    for step in run.steps(items=batch_size * seq_len):
        ids = batches[step % BATCHES]
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss  # training keeps no KV cache
        loss.backward()
        optimizer.step()
        run.loss(loss)  # .item() here also checks for divergence every step


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "tokens/s"})
