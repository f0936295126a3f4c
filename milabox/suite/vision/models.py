"""Vision models in plain torch (torchvision does not import beside the CPU torch wheel).

Compact re-statements of the torchvision / DINOv2 architectures the benchmarks train, with the same
layers, widths and initialisations, so that the full sizes do the same work as Milabench's:

- :class:`ResNet` (ResNet-50 v1.5: stride in the 3x3 conv of each bottleneck),
- :class:`ConvNeXt` (ConvNeXt-Large: 7x7 depthwise conv, LayerNorm, inverted MLP, layer scale,
  stochastic depth),
- :class:`RegNet` (RegNetY-128GF: widths from the quantised linear rule, grouped 3x3 convs,
  squeeze-and-excitation),
- :class:`vit.VisionTransformer` (ViT-g/14 as DINOv2 trains it: SwiGLU feed-forward, layer scale,
  stochastic depth on a subset of the batch, interpolated position embeddings for multi-crop), in vit.py.

Each class takes its sizes as keyword arguments, so the smoke size is the same code with small
numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from vit import VisionTransformer, stochastic_depth

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
