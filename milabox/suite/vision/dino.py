"""DINOv2-style self-distillation: projection head, Sinkhorn-Knopp teacher targets, DINO loss, EMA teacher.

What Milabench's dinov2-giant trains (facebookresearch/dinov2, vitg14.yaml), reduced to its DINO
part: a student ViT and an exponential-moving-average teacher see the same images as several crops;
the student learns to match the teacher's centred prototype assignments across views. The iBOT
masked-patch loss and the KoLeo regulariser of DINOv2 are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """MLP to a bottleneck, L2 normalisation, weight-normalised linear layer onto the prototypes."""

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3) -> None:
        super().__init__()
        if nlayers < 2:
            raise ValueError(f"dino head nlayers must be >= 2, not {nlayers}")
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
        for _ in range(nlayers - 2):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)  # unit-norm prototypes at start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        return self.last_layer(F.normalize(x, dim=-1, p=2, eps=eps))


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Teacher targets: softmax at ``temperature`` balanced over prototypes and samples (DINOv2's centring).

    Args:
        teacher_logits: (samples, prototypes).
        temperature: teacher temperature.
        iterations: normalisation rounds.

    Returns:
        (samples, prototypes) assignments, each row summing to 1.
    """
    q = teacher_logits.float() / temperature
    q = torch.exp(q - q.max()).t()  # the shift cancels in the normalisations and keeps exp finite
    prototypes, samples = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= samples
    return (q * samples).t()


def dino_loss(student_out: list[torch.Tensor], teacher_targets: list[torch.Tensor], student_temp: float,
              first_view: int = 0) -> torch.Tensor:
    """Cross-entropy between teacher targets and student predictions, summed over pairs of different views.

    The targets are constants (no gradient), so the loss splits into independent terms per student
    crop: the crops may be passed in several calls (e.g. global crops, then local crops) whose sums
    add up to the whole loss.

    Args:
        student_out: one (batch, prototypes) tensor a crop.
        teacher_targets: one (batch, prototypes) target per global crop; global crop i is view i.
        student_temp: student temperature.
        first_view: view index of ``student_out[0]`` (global crops come first, local crops after them).

    Returns:
        The sum of the pair losses (a 0-d float32 tensor).
    """
    total = torch.zeros((), device=student_out[0].device)
    for j, s in enumerate(student_out, start=first_view):
        log_p = F.log_softmax(s.float() / student_temp, dim=-1)
        for i, t in enumerate(teacher_targets):
            if i == j:  # a view is not its own target
                continue
            total = total - (t * log_p).sum(dim=-1).mean()
    return total


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher = momentum * teacher + (1 - momentum) * student, over all parameters at once."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
