"""ViT-g/14 as DINOv2 trains it, in plain torch: SwiGLU feed-forward, layer scale, stochastic depth on a subset of
the batch, interpolated position embeddings for multi-crop (models.py builds it by name, "vit")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole samples of a residual branch with probability p, rescaling the kept ones ("row" mode)."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask.div_(keep)


# --- ViT-g/14 (DINOv2) -------------------------------------------------------------------------


class SwiGLU(nn.Module):
    """SwiGLU feed-forward; DINOv2's fused variant sizes the hidden layer 2/3 of ``hidden``, rounded up to 8."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Mlp(nn.Module):
    """GELU feed-forward (ViT's default)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # flash / memory-efficient kernels where available
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


def drop_add_residual(x: torch.Tensor, branch, p: float) -> torch.Tensor:
    """``x + branch(x)`` with stochastic depth computed on a random subset of the batch (DINOv2's trick).

    Only ``1 - p`` of the samples go through the branch; their update is scaled by ``1 / (1 - p)``.
    Saves the compute and memory of the dropped samples instead of multiplying them by zero.
    """
    b = x.shape[0]
    keep = max(int(b * (1 - p)), 1)
    idx = torch.randperm(b, device=x.device)[:keep]
    update = branch(x[idx]).to(x.dtype)
    return torch.index_add(x.flatten(1), 0, idx, update.flatten(1), alpha=b / keep).view_as(x)


class Block(nn.Module):
    """Pre-norm transformer block with layer scale; stochastic depth as DINOv2 applies it."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, ffn: str, layerscale: float,
                 drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = nn.Parameter(torch.full((dim,), layerscale))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        if ffn not in ("swiglu", "mlp"):
            raise ValueError(f"ffn must be 'swiglu' or 'mlp', not {ffn!r}")
        self.mlp = SwiGLU(dim, int(dim * mlp_ratio)) if ffn == "swiglu" else Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = nn.Parameter(torch.full((dim,), layerscale))
        self.drop_path = drop_path

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls1 * self.attn(self.norm1(x))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls2 * self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.drop_path if self.training else 0.0
        if p > 0.1:  # DINOv2: large rates drop a subset of the batch (cheaper than masking)
            x = drop_add_residual(x, self._attn, p)
            return drop_add_residual(x, self._mlp, p)
        x = x + stochastic_depth(self._attn(x), p, self.training)
        return x + stochastic_depth(self._mlp(x), p, self.training)


class VisionTransformer(nn.Module):
    """ViT backbone returning the class token; DINOv2's ViT-g/14 is ``patch_size=14, embed_dim=1536, depth=40,
    num_heads=24, ffn="swiglu", layerscale=1e-5``. Inputs of other sizes than ``img_size`` (multi-crop)
    get bicubically interpolated position embeddings."""

    def __init__(self, img_size: int = 224, patch_size: int = 14, embed_dim: int = 1536, depth: int = 40,
                 num_heads: int = 24, mlp_ratio: float = 4.0, ffn: str = "swiglu", layerscale: float = 1e-5,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, ffn, layerscale, drop_path)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.embed_dim = embed_dim
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        if h == w == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=(h, w), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.to(self.pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self._pos_embed(h, w)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]
