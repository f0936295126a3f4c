"""Stable Diffusion UNet training step throughput (items/s = latent images/s), random init, synthetic data.

The step Stable Diffusion's fine-tuning trains (and Milabench's diffusion benchmark times): sample noise and
a timestep per image, noise the latents with a DDPM schedule, predict the noise with a text-conditioned
UNet2DConditionModel, MSE against the noise, AdamW. The VAE and the CLIP text encoder are frozen in that
recipe and only feed the UNet, so they are left out: the latents stand for VAE-encoded images (unit
variance, as scaled latents are) and the conditioning for the text encoder's last hidden states.

Config (MILABOX_CONFIG): batch_size, text_len (conditioning tokens), unet (diffusers.UNet2DConditionModel
keyword arguments; sample_size is the latent side), scheduler (diffusers.DDPMScheduler keyword arguments),
lr (default 1e-4), weight_decay (default 1e-2), precision (fp32, or bf16 = fp32 weights with bf16 autocast,
as Milabench's accelerate bf16 mixed precision), seed (default 0), plus warmup/steps/max_seconds.
"""

from __future__ import annotations

import os

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# diffusers (done in bench()), which reads these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DIFFUSERS_NO_ADVISORY_WARNINGS"] = "1"

BATCHES = 4  # distinct synthetic batches, made before timing and cycled


def bench(run: mr.Run) -> None:
    """Train the UNet for the run's steps; each step is one batch of ``batch_size`` latents."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, UNet2DConditionModel

    cfg = run.config
    if run.precision not in ("fp32", "bf16"):
        raise ValueError(f"diffusion runs fp32 or bf16, not {run.precision}")
    batch_size, text_len = int(cfg["batch_size"]), int(cfg["text_len"])
    if batch_size < 1 or text_len < 1:
        raise ValueError(f"batch_size and text_len must be >= 1, not {batch_size} and {text_len}")
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device

    # fp32 master weights; bf16 comes from autocast, as accelerate's mixed precision does.
    unet = UNet2DConditionModel(**cfg["unet"]).to(dev).train()
    scheduler = DDPMScheduler(**cfg["scheduler"])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=float(cfg.get("lr", 1e-4)),
                                  weight_decay=float(cfg.get("weight_decay", 1e-2)))
    uc = unet.config
    side = uc.sample_size
    # Made on the device, before timing: the timed step is the UNet's training step only.
    latents = [torch.randn(batch_size, uc.in_channels, side, side, device=dev) for _ in range(BATCHES)]
    text = [torch.randn(batch_size, text_len, uc.cross_attention_dim, device=dev) for _ in range(BATCHES)]
    timesteps_max = scheduler.config.num_train_timesteps

    for step in run.steps(items=batch_size):
        x0, cond = latents[step % BATCHES], text[step % BATCHES]
        noise = torch.randn_like(x0)
        t = torch.randint(0, timesteps_max, (batch_size,), device=dev)
        noisy = scheduler.add_noise(x0, noise, t)
        optimizer.zero_grad(set_to_none=True)
        with run.autocast():
            pred = unet(noisy, t, encoder_hidden_states=cond, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        run.loss(loss)
    run.emit("diffusion", parameters=sum(p.numel() for p in unet.parameters()), latent_side=side,
             cross_attention_dim=uc.cross_attention_dim)


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "items/s"})
