"""PPO RLHF throughput (tokens/s = prompt tokens per second, as Milabench counts) of random-init GPT-NeoX models.

As Milabench's `rlhf-single` (TRL's PPOTrainer on Pythia-1B), in plain torch: a policy, its frozen reference
copy, a value model and a frozen reward model (GPT-NeoX sequence scorers with one output). Each step is one
PPO update: the policy samples ``response_len`` tokens for ``batch_size`` synthetic prompts (temperature
sampling with a KV cache); the reference gives per-token log-probabilities, the value model per-token values,
the reward model a score at the last token; rewards are the KL penalty -kl_coef * (logp - ref_logp) per token
plus the score on the last one; GAE (gamma, lam) gives advantages (whitened) and returns; then ``ppo_epochs``
epochs of ``mini_batches`` minibatches each run the clipped policy loss + vf_coef x the clipped value loss
and an AdamW step over the policy and value parameters.

Config (MILABOX_CONFIG): batch_size, prompt_len, response_len, model (transformers.GPTNeoXConfig keyword
arguments, shared by the four models), ppo_epochs (default 4), mini_batches (default 1), temperature (default
0.7), kl_coef (0.05), cliprange (0.2), cliprange_value (0.2), vf_coef (0.1), gamma (1.0), lam (0.95), lr
(5e-5), precision (fp32, tf32 or bf16: models stored in bf16, computed under bf16 autocast), seed (default 0),
plus the runtime's warmup/steps/max_seconds.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# transformers (done in bench()), which reads these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

BATCHES = 4  # distinct synthetic prompt batches, made before timing and cycled


def build_policy(model_cfg: dict[str, Any], dtype: Any = None) -> Any:
    """GPTNeoXForCausalLM from GPTNeoXConfig keyword arguments, randomly initialised on the current device."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    return AutoModelForCausalLM.from_config(GPTNeoXConfig(**model_cfg), dtype=dtype)


def build_scorer(model_cfg: dict[str, Any], dtype: Any = None) -> Any:
    """GPTNeoXForSequenceClassification with one output (a reward or value head over every position)."""
    from transformers import AutoModelForSequenceClassification, GPTNeoXConfig

    return AutoModelForSequenceClassification.from_config(GPTNeoXConfig(**model_cfg, num_labels=1), dtype=dtype)


def token_logprobs(torch: Any, logits: Any, tokens: Any, temperature: float) -> Any:
    """log p(token) under softmax(logits / temperature), in fp32."""
    logp = (logits.float() / temperature).log_softmax(-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def sample(torch: Any, policy: Any, queries: Any, response_len: int, temperature: float) -> tuple[Any, Any]:
    """Sample ``response_len`` tokens after each query (KV cache, no stop token); return query+response, log-probs."""
    ids, cache, tokens, logps = queries, None, [], []
    for _ in range(response_len):
        out = policy(input_ids=ids, past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        ids = torch.multinomial((logits.float() / temperature).softmax(-1), 1)
        tokens.append(ids)
        logps.append(token_logprobs(torch, logits, ids.squeeze(-1), temperature))
    return torch.cat([queries, *tokens], dim=1), torch.stack(logps, dim=1)


def scores(scorer: Any, ids: Any) -> Any:
    """The scorer's head over every position (TRL's get_reward without padding): shape batch x length."""
    hidden = scorer.gpt_neox(input_ids=ids, use_cache=False).last_hidden_state
    return scorer.score(hidden).squeeze(-1).float()


def advantages_and_returns(torch: Any, rewards: Any, values: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimation over the response tokens; advantages whitened, returns unwhitened."""
    last, out = 0.0, []
    for t in reversed(range(rewards.shape[1])):
        following = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        last = rewards[:, t] + gamma * following - values[:, t] + gamma * lam * last
        out.append(last)
    adv = torch.stack(out[::-1], dim=1)
    returns = adv + values
    return (adv - adv.mean()) / (adv.var() + 1e-8).sqrt(), returns


def bench(run: mr.Run) -> None:
    """Run PPO updates for the run's steps; each step is one rollout of ``batch_size`` prompts and its epochs."""
    import torch

    cfg = run.config
    if run.precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"rlhf runs fp32, tf32 or bf16, not {run.precision}")
    batch_size, prompt_len, response_len = int(cfg["batch_size"]), int(cfg["prompt_len"]), int(cfg["response_len"])
    epochs, mini_batches = int(cfg.get("ppo_epochs", 4)), int(cfg.get("mini_batches", 1))
    if batch_size % mini_batches:
        raise ValueError(f"batch_size {batch_size} is not a multiple of mini_batches {mini_batches}")
    temperature, kl_coef = float(cfg.get("temperature", 0.7)), float(cfg.get("kl_coef", 0.05))
    clip, clip_v, vf_coef = float(cfg.get("cliprange", 0.2)), float(cfg.get("cliprange_value", 0.2)), \
        float(cfg.get("vf_coef", 0.1))
    gamma, lam = float(cfg.get("gamma", 1.0)), float(cfg.get("lam", 0.95))
    run.seed(int(cfg.get("seed", 0)))
    dev, model_cfg = run.device, dict(cfg["model"])
    with dev:  # initialise the weights on the device, in the run's dtype
        policy = build_policy(model_cfg, dtype=run.dtype)
        reward = build_scorer(model_cfg, dtype=run.dtype)
    if prompt_len + response_len > policy.config.max_position_embeddings:
        raise ValueError(f"prompt_len + response_len > max_position_embeddings {policy.config.max_position_embeddings}")
    # As in Milabench, the reference starts as the policy and the value model as the reward model (one checkpoint).
    ref, value = copy.deepcopy(policy).eval(), copy.deepcopy(reward)
    for frozen in (ref, reward):
        frozen.eval().requires_grad_(False)
    policy.train()
    value.train()
    trained = [*policy.parameters(), *value.parameters()]
    run.emit("parameters", policy=sum(p.numel() for p in policy.parameters()),
             value=sum(p.numel() for p in value.parameters()), trained=sum(p.numel() for p in trained))
    optimizer = torch.optim.AdamW(trained, lr=float(cfg.get("lr", 5e-5)), weight_decay=0.0)
    vocab = policy.config.vocab_size
    prompts = [torch.randint(0, vocab, (batch_size, prompt_len), device=dev) for _ in range(BATCHES)]
    mini = batch_size // mini_batches

    for step in run.steps(items=batch_size * prompt_len):
        queries = prompts[step % BATCHES]
        with torch.no_grad(), run.autocast():  # rollout and scoring
            seq, logp = sample(torch, policy, queries, response_len, temperature)
            response = seq[:, prompt_len:]
            ref_logp = token_logprobs(torch, ref(input_ids=seq, use_cache=False).logits[:, prompt_len - 1:-1],
                                      response, temperature)
            values = scores(value, seq)[:, prompt_len - 1:-1]
            score = scores(reward, seq)[:, -1]
            rewards = -kl_coef * (logp - ref_logp)
            rewards[:, -1] += score
            adv, returns = advantages_and_returns(torch, rewards, values, gamma, lam)
        for _ in range(epochs):
            order = torch.randperm(batch_size, device=dev)
            for start in range(0, batch_size, mini):
                idx = order[start:start + mini]
                with run.autocast():
                    logits = policy(input_ids=seq[idx], use_cache=False).logits[:, prompt_len - 1:-1]
                    new_logp = token_logprobs(torch, logits, response[idx], temperature)
                    vpred = scores(value, seq[idx])[:, prompt_len - 1:-1]
                vclipped = torch.clamp(vpred, values[idx] - clip_v, values[idx] + clip_v)
                vf_loss = 0.5 * torch.max((vpred - returns[idx]) ** 2, (vclipped - returns[idx]) ** 2).mean()
                ratio = (new_logp - logp[idx]).exp()
                pg_loss = torch.max(-adv[idx] * ratio, -adv[idx] * ratio.clamp(1 - clip, 1 + clip)).mean()
                loss = pg_loss + vf_coef * vf_loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        run.loss(loss)  # .item() here also checks for divergence every step


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "tokens/s"})
