"""Llama-architecture generation throughput (tokens/s = generated tokens per second) from a random init.

Each step is one ``model.generate`` call with the KV cache: the prefill of a synthetic prompt batch, then
``new_tokens`` decoding steps, top-k sampling as Milabench's pipeline call (``do_sample``, ``top_k``;
end-of-sequence suppressed, so every call generates exactly ``new_tokens`` tokens; ``top_k = 0`` decodes
greedily). The rate counts the generated tokens over the whole call, prefill included. The weights are in
the run's precision (fp32, fp16 or bf16), without autocast.

Sanity check instead of a training loss: each warm-up step reports the model's mean negative
log-likelihood of the prompt and what it generated (run.loss: a NaN or infinity fails the run), and each
step checks that exactly ``new_tokens`` tokens came back.

Config (MILABOX_CONFIG): batch_size, prompt_len, new_tokens, top_k (default 0: greedy), model
(transformers.LlamaConfig keyword arguments), seed (default 0), plus the runtime's warmup/steps/max_seconds.
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

PROMPTS = 4  # distinct synthetic prompt batches, made before timing and cycled


def build_model(model_cfg: dict, dtype: Any) -> Any:
    """The Llama causal LM of ``model_cfg`` (transformers.LlamaConfig keyword arguments) in ``dtype``, built on
    the current default device (the run's device, or ``torch.device("meta")`` to count parameters)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    return AutoModelForCausalLM.from_config(LlamaConfig(**model_cfg), dtype=dtype)


def bench(run: mr.Run) -> None:
    """Generate ``new_tokens`` tokens per prompt for the run's steps."""
    import torch
    from transformers import GenerationConfig

    cfg = run.config
    if run.precision not in ("fp32", "tf32", "fp16", "bf16"):
        raise ValueError(f"llama runs fp32, tf32, fp16 or bf16 weights, not {run.precision}")
    batch_size, prompt_len, new_tokens = int(cfg["batch_size"]), int(cfg["prompt_len"]), int(cfg["new_tokens"])
    top_k = int(cfg.get("top_k", 0))
    if min(batch_size, prompt_len, new_tokens) < 1 or top_k < 0:
        raise ValueError("batch_size, prompt_len and new_tokens must be >= 1, top_k >= 0")
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device
    if prompt_len + new_tokens > int(cfg["model"].get("max_position_embeddings", 2048)):
        raise ValueError(f"prompt_len + new_tokens = {prompt_len + new_tokens} > max_position_embeddings "
                         f"{cfg['model'].get('max_position_embeddings', 2048)}")
    with dev:  # initialise the weights on the device, in the run's dtype: no host copy of a 7B model
        model = build_model(cfg["model"], run.dtype)
    model.eval()
    config = model.config
    eos = config.eos_token_id
    generation = GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens,  # end-of-sequence suppressed: fixed work
        do_sample=top_k > 0, top_k=top_k if top_k > 0 else None, num_beams=1, use_cache=True,
        eos_token_id=eos, pad_token_id=eos if config.pad_token_id is None else config.pad_token_id)
    prompts = [torch.randint(0, config.vocab_size, (batch_size, prompt_len), device=dev) for _ in range(PROMPTS)]

    with torch.inference_mode():
        for step in run.steps(items=batch_size * new_tokens):
            ids = prompts[step % PROMPTS]
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=generation)
            if tuple(out.shape) != (batch_size, prompt_len + new_tokens):
                raise RuntimeError(f"generate returned shape {tuple(out.shape)}, expected "
                                   f"({batch_size}, {prompt_len + new_tokens})")
            if step < 0:  # warm-up: untimed, so the check costs the measurement nothing
                run.loss(model(input_ids=out, labels=out).loss)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "tokens/s"})
