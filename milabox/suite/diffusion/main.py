"""Stable Diffusion training step throughput (items/s = images/s), random init, synthetic images and captions.

The step Milabench's diffusion benchmark times (benchmarks/diffusion/main.py, Stable Diffusion 2): encode the
images with the frozen VAE (AutoencoderKL, latent sample x scaling factor) and the token ids with the frozen CLIP
text encoder (CLIPTextModel, last hidden states), sample noise and a timestep per image, noise the latents with a
DDPM schedule, predict the noise with the text-conditioned UNet2DConditionModel, MSE against the noise, AdamW on
the UNet. With ``ddp = true`` the UNet trains under DistributedDataParallel, one process a device (torchrun, see
milabox_runtime.distributed); the rate counts every process' images.

Config (MILABOX_CONFIG): batch_size (per process), resolution (image side in pixels), text_len (token ids a
caption), unet (diffusers.UNet2DConditionModel keyword arguments), vae (diffusers.AutoencoderKL keyword
arguments), text_encoder (transformers.CLIPTextConfig keyword arguments), scheduler (diffusers.DDPMScheduler
keyword arguments), lr (default 1e-4), weight_decay (default 1e-2), ddp (default false), nproc (CPU processes
of a ddp run, default 1), precision (fp32, or bf16 = fp32 UNet weights with bf16 autocast and bf16 frozen
encoders, as Milabench's accelerate bf16 mixed precision), seed (default 0), plus warmup/steps/max_seconds.
"""

from __future__ import annotations

import os

import milabox_runtime as mr

# Nothing may be downloaded at run time (containers run without a network): set before importing
# diffusers and transformers (done in build()), which read these at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DIFFUSERS_NO_ADVISORY_WARNINGS"] = "1"

BATCHES = 4  # distinct synthetic batches, made before timing and cycled


def build(cfg: dict):
    """The UNet, VAE and text encoder of the config, randomly initialised (under the caller's device context).

    Returns:
        (unet, vae, text_encoder).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    return unet, vae, text_encoder


def bench(run: mr.Run) -> None:
    """Train the UNet for the run's steps; each step is one batch of ``batch_size`` images a process."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    cfg = run.config
    if run.precision not in ("fp32", "bf16"):
        raise ValueError(f"diffusion runs fp32 or bf16, not {run.precision}")
    batch_size, text_len, side = int(cfg["batch_size"]), int(cfg["text_len"]), int(cfg["resolution"])
    if batch_size < 1 or text_len < 1 or side < 1:
        raise ValueError(f"batch_size, text_len and resolution must be >= 1, not {batch_size}, {text_len}, {side}")
    ddp = bool(cfg.get("ddp", False))
    rank, world = 0, 1
    if ddp:
        rank, world, _ = mr.distributed.init_process_group(run)
    try:
        seed = int(cfg.get("seed", 0))
        run.seed(seed)  # the same initial weights on every rank
        dev = run.device
        with dev:
            unet, vae, text_encoder = build(cfg)
        # fp32 UNet master weights (bf16 comes from autocast); the frozen encoders are cast, as Milabench does.
        frozen = torch.bfloat16 if run.precision == "bf16" else torch.float32
        vae.requires_grad_(False).eval().to(dtype=frozen)
        text_encoder.requires_grad_(False).eval().to(dtype=frozen)
        unet.train()
        trained = unet
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            trained = DistributedDataParallel(unet, device_ids=None if dev.type == "cpu" else [dev])
        scheduler = DDPMScheduler(**cfg["scheduler"])
        optimizer = torch.optim.AdamW(unet.parameters(), lr=float(cfg.get("lr", 1e-4)),
                                      weight_decay=float(cfg.get("weight_decay", 1e-2)))
        scaling = float(vae.config.scaling_factor)
        vocab = text_encoder.config.vocab_size
        timesteps_max = scheduler.config.num_train_timesteps
        run.seed(seed + 1 + rank)  # each rank its own images
        # Made on the device before timing: images in [-1, 1] (Milabench's Normalize([0.5], [0.5])), caption ids.
        images = [torch.rand(batch_size, 3, side, side, device=dev).mul_(2).sub_(1).to(frozen)
                  for _ in range(BATCHES)]
        captions = [torch.randint(0, vocab, (batch_size, text_len), device=dev) for _ in range(BATCHES)]

        for step in run.steps(items=batch_size * world):
            pixels, ids = images[step % BATCHES], captions[step % BATCHES]
            with torch.no_grad():
                latents = vae.encode(pixels).latent_dist.sample() * scaling
                cond = text_encoder(ids, return_dict=False)[0]
            noise = torch.randn_like(latents)
            t = torch.randint(0, timesteps_max, (batch_size,), device=dev)
            noisy = scheduler.add_noise(latents, noise, t)
            with run.autocast():
                pred = trained(noisy, t, cond, return_dict=False)[0]
            loss = F.mse_loss(pred.float(), noise.float())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            run.loss(loss)
        run.emit("diffusion", parameters=sum(p.numel() for p in unet.parameters()), latent_side=latents.shape[-1],
                 vae_parameters=sum(p.numel() for p in vae.parameters()),
                 text_encoder_parameters=sum(p.numel() for p in text_encoder.parameters()),
                 cross_attention_dim=unet.config.cross_attention_dim)
    finally:
        if ddp:
            mr.distributed.destroy_process_group()



if __name__ == "__main__":
    # A ddp run spans every selected device: re-executed under torchrun when that means > 1 process.
    if bool(mr.distributed.config_value("ddp", False)):
        mr.distributed.launch_if_needed()
    mr.main(bench, defaults={"unit": "items/s"})
