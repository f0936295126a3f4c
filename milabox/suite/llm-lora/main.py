"""Llama fine-tuning throughput (tokens/s = trained tokens per second) from a random init: LoRA or full.

Milabench's torchtune recipes (lora_finetune_single_device, lora_finetune_distributed,
full_finetune_distributed) with transformers' Llama and peft's LoRA. The model is built on the meta device
(:func:`build_model`), sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``: each decoder layer, the
layers named in ``shard_separately``, then the root) or wrapped in DistributedDataParallel when asked,
materialised on the device and initialised there (normal(0, initializer_range) matrices, unit norms,
zero LoRA B), so no rank ever holds a full copy of a sharded 70B model. Weights, adapters, gradients and
AdamW state are all in the run's dtype (bf16 as torchtune's ``dtype: bf16``, no autocast); with LoRA the
base weights are frozen and only the adapters train.

A step is one optimizer step: ``gradient_accumulation`` micro-batches of batch_size x seq_len synthetic
tokens (forward, causal-LM loss, backward each), then AdamW. The rate counts every token of those
micro-batches on every rank, as Milabench's observer does (its batch_size_fn is batch x padded length of
each batch the loader yields; it reports at each optimizer step).

Config (MILABOX_CONFIG): batch_size (per process), seq_len, gradient_accumulation (default 1),
gradient_checkpointing (default false), finetune (lora or full, default lora), lora = {r, alpha,
target_modules, dropout (default 0)}, model (transformers.LlamaConfig keyword arguments), parallel (none,
ddp or fsdp; default none), shard_separately (fsdp: module names sharded on their own, default none),
nproc (CPU processes of a ddp/fsdp run, default 1), precision (fp32, tf32 or bf16), lr (default 3e-4),
weight_decay (default 0.01), fused (fused AdamW, default false), seed (default 0), plus the runtime's
warmup/steps/max_seconds.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers and peft (done in the functions below), which read these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# peft 0.21 reads a transformers attribute deprecated in transformers 5: noise in every run's log.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

BATCHES = 4  # distinct synthetic batches a rank, made before timing and cycled
PARALLEL = ("none", "ddp", "fsdp")
FINETUNE = ("lora", "full")


def build_model(model_cfg: dict[str, Any], lora: dict[str, Any] | None, dtype: Any,
                gradient_checkpointing: bool = False) -> Any:
    """The Llama causal LM (with frozen base and LoRA adapters when ``lora`` is given), built on the current
    default device: call it under ``torch.device("meta")`` and materialise it with :func:`materialise`.

    Args:
        model_cfg: transformers.LlamaConfig keyword arguments.
        lora: {r, alpha, target_modules, dropout}, or None for full fine-tuning.
        dtype: the torch dtype of every weight (adapters included).
        gradient_checkpointing: recompute each decoder layer's activations in the backward pass.

    Returns:
        The model (a peft model with ``lora``).
    """
    from transformers import AutoModelForCausalLM, LlamaConfig

    base = AutoModelForCausalLM.from_config(LlamaConfig(**model_cfg), dtype=dtype)
    if gradient_checkpointing:
        # Non-reentrant checkpointing works with a frozen base (no input that requires grad is needed).
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if lora is None:
        return base
    from peft import LoraConfig, get_peft_model

    adapters = LoraConfig(r=int(lora["r"]), lora_alpha=int(lora["alpha"]),
                          lora_dropout=float(lora.get("dropout", 0.0)),
                          target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    # autocast_adapter_dtype=False keeps the adapters in the base's dtype (bf16 like torchtune), not fp32.
    return get_peft_model(base, adapters, autocast_adapter_dtype=False)


def decoder(model: Any) -> Any:
    """The LlamaModel inside a causal LM or a peft wrapper of one."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model


def shard(model: Any, separately: list[str]) -> None:
    """FSDP2 as torchtune's shard_model: each decoder layer, each module named in ``separately``, then the root."""
    from torch.distributed.fsdp import fully_shard

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in separately:
        matches = [m for n, m in inner.named_modules() if n.rsplit(".", 1)[-1] == name]
        if not matches:
            raise ValueError(f"config shard_separately names {name!r}, which the model does not have")
        for module in matches:
            fully_shard(module)
    for layer in decoder(model).layers:
        fully_shard(layer)
    fully_shard(model)


def materialise(model: Any, device: Any, std: float) -> None:
    """Allocate a meta-built (possibly sharded) model on ``device`` and initialise it in place.

    Each rank initialises only its own shards (a DTensor's local tensor). The rotary embedding's
    non-persistent frequency buffers, which ``to_empty`` leaves uninitialised, are recomputed.
    """
    import torch

    model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            local = p.to_local() if hasattr(p, "to_local") else p
            if "lora_B" in name:
                local.zero_()  # LoRA starts as the identity, as peft and torchtune initialise it
            elif p.ndim == 1:
                local.fill_(1.0)  # RMSNorm scales
            else:
                local.normal_(0.0, std)
        for module in model.modules():
            if hasattr(module, "inv_freq") and hasattr(module, "config"):
                with torch.device("cpu"):
                    fresh = type(module)(module.config)
                for buf in ("inv_freq", "original_inv_freq"):
                    if hasattr(module, buf):
                        getattr(module, buf).copy_(getattr(fresh, buf))


def bench(run: mr.Run) -> None:
    """Fine-tune for the run's steps; each step is ``gradient_accumulation`` micro-batches then one AdamW step."""
    import contextlib

    import torch

    cfg = run.config
    if run.precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"llm fine-tuning runs fp32, tf32 or bf16 (pure, as torchtune does), not {run.precision}")
    parallel, finetune = cfg.get("parallel", "none"), cfg.get("finetune", "lora")
    if parallel not in PARALLEL or finetune not in FINETUNE:
        raise ValueError(f"config parallel must be one of {PARALLEL} and finetune one of {FINETUNE}, "
                         f"not {parallel!r} / {finetune!r}")
    batch_size, seq_len = int(cfg["batch_size"]), int(cfg["seq_len"])
    accumulate = int(cfg.get("gradient_accumulation", 1))
    if min(batch_size, seq_len, accumulate) < 1:
        raise ValueError("batch_size, seq_len and gradient_accumulation must be >= 1")
    if seq_len > int(cfg["model"].get("max_position_embeddings", 2048)):
        raise ValueError(f"seq_len {seq_len} > model.max_position_embeddings")
    rank, world = 0, 1
    if parallel != "none":
        rank, world, _ = mr.distributed.init_process_group(run)
    try:
        seed = int(cfg.get("seed", 0))
        dev = run.device
        with torch.device("meta"):
            model = build_model(cfg["model"], cfg["lora"] if finetune == "lora" else None, run.dtype,
                                bool(cfg.get("gradient_checkpointing", False)))
        config = decoder(model).config
        trainable = [p for p in model.parameters() if p.requires_grad]
        run.emit("parameters", trainable=sum(p.numel() for p in trainable),
                 total=sum(p.numel() for p in model.parameters()), world_size=world, parallel=parallel)
        if parallel == "fsdp":
            shard(model, list(cfg.get("shard_separately", [])))
        run.seed(seed + (rank if parallel == "fsdp" else 0))  # DDP: the same weights on every rank
        materialise(model, dev, float(config.initializer_range))
        model.train()
        trained = model
        if parallel == "ddp":
            trained = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dev] if dev.type in ("cuda", "xpu") else None)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=float(cfg.get("lr", 3e-4)), weight_decay=float(cfg.get("weight_decay", 0.01)),
                                      fused=bool(cfg.get("fused", False)))
        run.seed(seed + 1 + rank)  # each rank its own tokens
        batches = [torch.randint(0, config.vocab_size, (batch_size, seq_len), device=dev) for _ in range(BATCHES)]

        for step in run.steps(items=batch_size * seq_len * accumulate * world):
            total = torch.zeros((), device=dev)
            for micro in range(accumulate):
                ids = batches[(step * accumulate + micro) % BATCHES]
                # DDP reduces gradients once a step, on the last micro-batch (FSDP2 reduce-scatters each one,
                # as torchtune's recipes do).
                sync = parallel != "ddp" or micro == accumulate - 1
                with contextlib.nullcontext() if sync else trained.no_sync():
                    loss = trained(input_ids=ids, labels=ids, use_cache=False).loss  # training keeps no KV cache
                    (loss / accumulate).backward()
                total += loss.detach()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            run.loss(total / accumulate)  # .item() once a step also checks for divergence
    finally:
        if parallel != "none":
            mr.distributed.destroy_process_group()



if __name__ == "__main__":
    # A ddp/fsdp run spans every selected device: re-executed under torchrun when that means > 1 process.
    if mr.distributed.config_value("parallel", "none") != "none":
        mr.distributed.launch_if_needed()
    mr.main(bench, defaults={"unit": "tokens/s"})
