"""Vision models in plain torch (torchvision does not import beside the CPU torch wheel).

Compact re-statements of the torchvision / DINOv2 architectures the benchmarks train, with the same
layers, widths and initialisations, so that the full sizes do the same work as Milabench's:

- :class:`ResNet` (ResNet-50 v1.5: stride in the 3x3 conv of each bottleneck),
- :class:`ConvNeXt` (ConvNeXt-Large: 7x7 depthwise conv, LayerNorm, inverted MLP, layer scale,
  stochastic depth),
- :class:`RegNet` (RegNetY-128GF: widths from the quantised linear rule, grouped 3x3 convs,
  squeeze-and-excitation),
- :class:`VisionTransformer` (ViT-g/14 as DINOv2 trains it: SwiGLU feed-forward, layer scale,
  stochastic depth on a subset of the batch, interpolated position embeddings for multi-crop).

Each class takes its sizes as keyword arguments, so the smoke size is the same code with small
numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# --- ResNet-50 ---------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4; projection shortcut when shapes change."""

    expansion = 4

    def __init__(self, width_in: int, planes: int, stride: int) -> None:
        super().__init__()
        width_out = planes * self.expansion
        self.conv1 = nn.Conv2d(width_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or width_in != width_out:
            self.downsample = nn.Sequential(nn.Conv2d(width_in, width_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(width_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with bottleneck blocks; ``layers=(3, 4, 6, 3), width=64`` is torchvision's resnet50."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        blocks, width_in = [], width
        for stage, depth in enumerate(layers):
            planes = width * 2**stage
            for i in range(depth):
                blocks.append(Bottleneck(width_in, planes, 2 if i == 0 and stage > 0 else 1))
                width_in = planes * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- ConvNeXt-Large ----------------------------------------------------------------------------


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole samples of a residual branch with probability p, rescaling the kept ones ("row" mode)."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask.div_(keep)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, Linear 4x, GELU, Linear, layer scale, stochastic depth."""

    def __init__(self, dim: int, layer_scale: float, sd_prob: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.sd_prob = sd_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + stochastic_depth(self.layer_scale * y, self.sd_prob, self.training)


class ConvNeXt(nn.Module):
    """ConvNeXt; torchvision's convnext_large is ``depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)``."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 27, 3), dims: tuple[int, ...] = (192, 384, 768, 1536),
                 stochastic_depth_prob: float = 0.5, layer_scale: float = 1e-6, num_classes: int = 1000) -> None:
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError(f"convnext depths {depths} and dims {dims} must have the same length")
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6)]
        total, block_id = sum(depths), 0
        for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            if stage > 0:  # downsampling between stages
                layers += [LayerNorm2d(dims[stage - 1], eps=1e-6), nn.Conv2d(dims[stage - 1], dim, 2, stride=2)]
            for _ in range(depth):
                # The drop probability grows linearly with depth, as torchvision does.
                layers.append(CNBlock(dim, layer_scale, stochastic_depth_prob * block_id / max(total - 1.0, 1.0)))
                block_id += 1
        self.features = nn.Sequential(*layers)
        self.norm = LayerNorm2d(dims[-1], eps=1e-6)
        self.fc = nn.Linear(dims[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.adaptive_avg_pool2d(self.features(x), 1))
        return self.fc(torch.flatten(x, 1))


# --- RegNetY-128GF -----------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def regnet_stages(depth: int, w0: int, wa: float, wm: float, group_width: int,
                  bottleneck_multiplier: float = 1.0) -> list[tuple[int, int, int]]:
    """Stage (width, depth, group width) of a RegNet from its design-space parameters (Radosavovic et al.).

    Block widths follow ``w0 + wa * j``, snapped to ``w0 * wm**k`` and quantised to multiples of 8;
    consecutive blocks of equal width form a stage; widths are then made divisible by the group width.
    Same rule as torchvision's ``BlockParams.from_init_params``.

    Args:
        depth: number of blocks.
        w0, wa, wm: initial width, slope, multiplier.
        group_width: channels per group of the 3x3 conv.
        bottleneck_multiplier: bottleneck width / block width.

    Returns:
        One (width, depth, group width) per stage.

    Raises:
        ValueError: parameters outside the design space.
    """
    if wa < 0 or w0 <= 0 or wm <= 1 or w0 % 8 != 0 or depth < 1:
        raise ValueError(f"invalid RegNet parameters depth={depth} w0={w0} wa={wa} wm={wm}")
    widths = []
    for j in range(depth):
        cont = j * wa + w0
        k = round(math.log(cont / w0) / math.log(wm))
        widths.append(int(round(w0 * wm**k / 8) * 8))
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for width, count in stages:
        w_bot = int(width * bottleneck_multiplier)
        g = min(group_width, w_bot)
        w_bot = _make_divisible(w_bot, g)
        out.append((int(w_bot / bottleneck_multiplier), count, g))
    return out


def _conv_bn(w_in: int, w_out: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(w_in, w_out, k, stride=stride, padding=(k - 1) // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(w_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gates from globally pooled features: 1x1 reduce, ReLU, 1x1 expand, sigmoid."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(scale)


class RegNetBlock(nn.Module):
    """RegNetY residual bottleneck: 1x1, grouped 3x3 (stride), SE, 1x1; projection shortcut when shapes change."""

    def __init__(self, w_in: int, w_out: int, stride: int, group_width: int, se_ratio: float,
                 bottleneck_multiplier: float = 1.0) -> None:
        super().__init__()
        w_b = round(w_out * bottleneck_multiplier)
        layers: list[nn.Module] = [_conv_bn(w_in, w_b, 1), _conv_bn(w_b, w_b, 3, stride, groups=w_b // group_width)]
        if se_ratio:
            layers.append(SqueezeExcitation(w_b, round(se_ratio * w_in)))
        layers.append(_conv_bn(w_b, w_out, 1, relu=False))
        self.f = nn.Sequential(*layers)
        self.proj = _conv_bn(w_in, w_out, 1, stride, relu=False) if (w_in != w_out or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return F.relu(shortcut + self.f(x), inplace=True)


class RegNet(nn.Module):
    """RegNetY; torchvision's regnet_y_128gf is ``depth=27, w0=456, wa=160.83, wm=2.52, group_width=264,
    se_ratio=0.25`` with a 32-channel stem."""

    def __init__(self, depth: int = 27, w0: int = 456, wa: float = 160.83, wm: float = 2.52,
                 group_width: int = 264, se_ratio: float = 0.25, stem_width: int = 32,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = _conv_bn(3, stem_width, 3, stride=2)
        blocks, w_in = [], stem_width
        for width, count, g in regnet_stages(depth, w0, wa, wm, group_width):
            for i in range(count):
                blocks.append(RegNetBlock(w_in, width, 2 if i == 0 else 1, g, se_ratio))
                w_in = width
        self.trunk = nn.Sequential(*blocks)
        self.fc = nn.Linear(w_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / (m.kernel_size[0] ** 2 * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


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


def build(arch: str, model: dict) -> nn.Module:
    """A classifier or backbone by architecture name.

    Args:
        arch: "resnet", "convnext", "regnet" or "vit".
        model: the class' keyword arguments (lists become tuples).

    Returns:
        The module, randomly initialised on the CPU.

    Raises:
        ValueError: an unknown architecture or argument.
    """
    classes = {"resnet": ResNet, "convnext": ConvNeXt, "regnet": RegNet, "vit": VisionTransformer}
    if arch not in classes:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(classes)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
    try:
        return classes[arch](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad model parameters for {arch}: {exc}") from None
