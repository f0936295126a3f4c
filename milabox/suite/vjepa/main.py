"""V-JEPA self-supervised video training throughput (clips/s) of a random-init video ViT on synthetic clips.

As facebookresearch/jepa's app/vjepa/train.py (what Milabench's vjepa runs): a video ViT whose 3D tubelet patch
embedding cuts a clip into tubelet x patch x patch tokens, fixed sin-cos positions, an EMA target encoder that
sees the whole clip, a context encoder that sees only the tokens a multi-block mask leaves (one pass a mask), a
narrow predictor that fills the masked positions from mask tokens, and the L1 loss between its outputs and the
layer-normed target features at those positions; AdamW on encoder and predictor, then the EMA update. The
forward pass runs under the run's autocast (bf16 as jepa's ``dtype: bfloat16``) with fp32 weights.

Masks follow jepa's multiblock3d collator: per clip, the union of ``num_blocks`` random spatial blocks (each
``spatial_scale`` of the grid, aspect ratio in ``aspect_ratio``) over all frames is predicted, the rest is
context; every clip of a batch keeps as many tokens as the batch's smallest (jepa trims the same way). Clips and
masks are made before timing and cycled.

Config (MILABOX_CONFIG): batch_size (clips a process), frames, image_size, model = {patch_size, tubelet_size,
embed_dim, depth, num_heads, mlp_ratio, pred_depth, pred_embed_dim}, masks = [{num_blocks, spatial_scale,
aspect_ratio}, ...], lr, weight_decay, ema (target momentum), ddp (default false), nproc (CPU processes of a ddp
run), seed (default 0), plus precision and the runtime's warmup/steps/max_seconds. Clips per second count every
process' clips (global batch).
"""

from __future__ import annotations

import copy
import math

import milabox_runtime as mr

BATCHES = 2  # distinct synthetic batches (clips and masks), made before timing and cycled


def _sincos(dim: int, positions):
    """1-D sin-cos features of ``positions`` (a float tensor), ``dim`` wide (even)."""
    import torch

    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = positions.double()[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_3d(dim: int, grid_t: int, grid_hw: int):
    """jepa's 3-D sin-cos positions with uniform_power: equal t/h/w parts, cut to ``dim`` ([t*h*w, dim])."""
    import torch

    part = int(math.ceil(dim / 6) * 2)
    t, h, w = torch.meshgrid(torch.arange(grid_t), torch.arange(grid_hw), torch.arange(grid_hw), indexing="ij")
    emb = torch.cat([_sincos(part, t.flatten()), _sincos(part, h.flatten()), _sincos(part, w.flatten())], dim=1)
    return emb[:, :dim].float()


def _modules():
    """The model classes (torch is imported only when a benchmark or test needs them)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        """Pre-norm transformer block: SDPA attention and a GELU MLP (timm/jepa layout)."""

        def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            hidden = int(dim * mlp_ratio)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
            return x + self.mlp(self.norm2(x))

    def gather(x, index):  # x [B, N, D], index [B, K] -> [B, K, D]
        return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))

    class VideoViT(nn.Module):
        """Video ViT encoder: Conv3d tubelet embedding, fixed sin-cos positions, blocks, final norm."""

        def __init__(self, image_size: int, frames: int, patch_size: int, tubelet_size: int, embed_dim: int,
                     depth: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
            super().__init__()
            if image_size % patch_size or frames % tubelet_size or embed_dim % num_heads:
                raise ValueError("image_size, frames and embed_dim must divide by patch_size, tubelet_size, num_heads")
            self.embed_dim, self.num_heads = embed_dim, num_heads
            self.patch_embed = nn.Conv3d(3, embed_dim, (tubelet_size, patch_size, patch_size),
                                         stride=(tubelet_size, patch_size, patch_size))
            grid_t, grid_hw = frames // tubelet_size, image_size // patch_size
            self.register_buffer("pos_embed", sincos_3d(embed_dim, grid_t, grid_hw), persistent=False)
            self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
            self.norm = nn.LayerNorm(embed_dim)

        def forward(self, clips, keep=None):
            x = self.patch_embed(clips).flatten(2).transpose(1, 2) + self.pos_embed
            if keep is not None:
                x = gather(x, keep)
            for block in self.blocks:
                x = block(x)
            return self.norm(x)

    class Predictor(nn.Module):
        """Narrow predictor: context features + one mask token a mask type at the predicted positions."""

        def __init__(self, embed_dim: int, pred_embed_dim: int, depth: int, num_heads: int, grid_t: int,
                     grid_hw: int, num_mask_tokens: int, mlp_ratio: float = 4.0) -> None:
            super().__init__()
            self.embed = nn.Linear(embed_dim, pred_embed_dim)
            self.mask_tokens = nn.Parameter(torch.zeros(num_mask_tokens, 1, 1, pred_embed_dim))  # zero init
            self.register_buffer("pos_embed", sincos_3d(pred_embed_dim, grid_t, grid_hw), persistent=False)
            self.blocks = nn.ModuleList(Block(pred_embed_dim, num_heads, mlp_ratio) for _ in range(depth))
            self.norm = nn.LayerNorm(pred_embed_dim)
            self.proj = nn.Linear(pred_embed_dim, embed_dim)

        def forward(self, z, keep, pred, mask_type: int):
            pos = self.pos_embed.unsqueeze(0).expand(z.size(0), -1, -1)
            x = self.embed(z) + gather(pos, keep)
            m = self.mask_tokens[mask_type] + gather(pos, pred)
            x = torch.cat([x, m], dim=1)
            for block in self.blocks:
                x = block(x)
            return self.proj(self.norm(x[:, keep.size(1):]))

    return VideoViT, Predictor


def build(model: dict, frames: int, image_size: int, num_masks: int):
    """(encoder, predictor) from the config's ``model`` table, as jepa's init_video_model builds them."""
    VideoViT, Predictor = _modules()
    p, t = int(model["patch_size"]), int(model["tubelet_size"])
    mlp_ratio = float(model.get("mlp_ratio", 4.0))
    encoder = VideoViT(image_size, frames, p, t, int(model["embed_dim"]), int(model["depth"]),
                       int(model["num_heads"]), mlp_ratio)
    # jepa's predictor keeps the encoder's head count (narrower heads).
    predictor = Predictor(encoder.embed_dim, int(model["pred_embed_dim"]), int(model["pred_depth"]),
                          encoder.num_heads, frames // t, image_size // p, num_masks, mlp_ratio)
    return encoder, predictor


def make_masks(rng, batch: int, grid_t: int, grid_hw: int, spec: dict):
    """(context, predicted) token indices [batch, K] for one multi-block mask type."""
    import torch

    lo, hi = (math.log(float(a)) for a in spec["aspect_ratio"])
    area = float(spec["spatial_scale"]) * grid_hw * grid_hw
    keeps, preds = [], []
    for _ in range(batch):
        masked = torch.zeros(grid_hw, grid_hw, dtype=torch.bool)
        for _ in range(int(spec["num_blocks"])):
            ratio = math.exp(rng.uniform(lo, hi))
            h = min(grid_hw, max(1, round(math.sqrt(area * ratio))))
            w = min(grid_hw, max(1, round(math.sqrt(area / ratio))))
            top, left = rng.randrange(grid_hw - h + 1), rng.randrange(grid_hw - w + 1)
            masked[top:top + h, left:left + w] = True
        full = masked.flatten().repeat(grid_t)  # temporal_scale 1.0: the same blocks in every frame
        if full.all() or not full.any():
            full[0] = not full[0]  # at least one token of each kind
        keeps.append(torch.nonzero(~full).flatten())
        preds.append(torch.nonzero(full).flatten())
    n_keep, n_pred = min(len(k) for k in keeps), min(len(p) for p in preds)
    return torch.stack([k[:n_keep] for k in keeps]), torch.stack([p[:n_pred] for p in preds])


def bench(run: mr.Run) -> None:
    """Train encoder and predictor for the run's steps; each step is one batch of ``batch_size`` clips."""
    import random

    import torch
    import torch.nn.functional as F

    cfg = run.config
    if run.precision not in ("fp32", "tf32", "bf16", "fp16"):
        raise ValueError(f"vjepa trains in fp32 weights with an optional autocast, not {run.precision}")
    batch, frames, size = int(cfg["batch_size"]), int(cfg["frames"]), int(cfg["image_size"])
    specs = list(cfg["masks"])
    if batch < 1 or not specs:
        raise ValueError("need batch_size >= 1 and at least one mask")
    ddp = bool(cfg.get("ddp", False))
    rank, world = 0, 1
    if ddp:
        rank, world, _ = mr.distributed.init_process_group(run)
    try:
        seed = int(cfg.get("seed", 0))
        run.seed(seed)  # the same initial weights on every rank
        dev = run.device
        with dev:  # fp32 weights (jepa autocasts the forward pass), initialised where they run
            encoder, predictor = build(cfg["model"], frames, size, len(specs))
        grid_t, grid_hw = frames // int(cfg["model"]["tubelet_size"]), size // int(cfg["model"]["patch_size"])
        target = copy.deepcopy(encoder)  # starts equal to the encoder, then follows it by EMA
        target.eval().requires_grad_(False)
        encoder.train()
        predictor.train()
        run.emit("parameters", encoder=sum(p.numel() for p in encoder.parameters()),
                 predictor=sum(p.numel() for p in predictor.parameters()))
        params = [*encoder.named_parameters(), *predictor.named_parameters()]
        decay = [p for n, p in params if "bias" not in n and p.ndim != 1]
        no_decay = [p for n, p in params if "bias" in n or p.ndim == 1]
        optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                                      lr=float(cfg.get("lr", 2e-4)),
                                      weight_decay=float(cfg.get("weight_decay", 0.04)))
        enc_params, tgt_params = list(encoder.parameters()), list(target.parameters())
        momentum = float(cfg.get("ema", 0.998))
        scaler = torch.amp.GradScaler(run.device_type, enabled=run.autocast_dtype == torch.float16)
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            ids = None if dev.type == "cpu" else [dev]
            # static_graph as Milabench: the encoder runs once a mask type before one backward.
            encoder = DistributedDataParallel(encoder, device_ids=ids, static_graph=True)
            predictor = DistributedDataParallel(predictor, device_ids=ids, static_graph=True)
        run.seed(seed + 1 + rank)  # each rank its own clips and masks
        rng = random.Random(seed + 1 + rank)
        data = []
        for _ in range(BATCHES):
            masks = [tuple(m.to(dev) for m in make_masks(rng, batch, grid_t, grid_hw, s)) for s in specs]
            data.append((torch.randn(batch, 3, frames, size, size, device=dev), masks))

        for step in run.steps(items=batch * world):
            clips, masks = data[step % BATCHES]
            optimizer.zero_grad(set_to_none=True)
            with run.autocast():
                with torch.no_grad():
                    h = target(clips)
                    h = F.layer_norm(h, (h.size(-1),))  # targets: normalised features of the whole clip
                loss = 0.0
                for i, (keep, pred) in enumerate(masks):
                    z = predictor(encoder(clips, keep), keep, pred, i)
                    goal = torch.gather(h, 1, pred.unsqueeze(-1).expand(-1, -1, h.size(-1)))
                    loss = loss + (z.float() - goal.float()).abs().mean()
                loss = loss / len(masks)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            with torch.no_grad():
                torch._foreach_lerp_(tgt_params, enc_params, 1.0 - momentum)
            run.loss(loss)
        run.emit("masks", context_tokens=[m[0].size(1) for m in data[0][1]],
                 predicted_tokens=[m[1].size(1) for m in data[0][1]], tokens=grid_t * grid_hw * grid_hw)
    finally:
        if ddp:
            mr.distributed.destroy_process_group()



if __name__ == "__main__":
    # vjepa-gpus spans every selected device: re-executed under torchrun when that means > 1 process.
    if bool(mr.distributed.config_value("ddp", False)):
        mr.distributed.launch_if_needed()
    mr.main(bench, defaults={"unit": "clips/s"})
