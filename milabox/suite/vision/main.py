"""Vision training throughput (images/s) from a random init on synthetic images.

Two workloads, picked by the config's ``arch``:

- a classifier (``resnet``, ``convnext``, ``regnet``): synthetic images and labels, cross-entropy,
  SGD, as Milabench's torchvision benchmarks train; with ``ddp = true`` the same step runs under
  DistributedDataParallel in one process a device (torchrun, see milabox_runtime.distributed);
- ``vit``: DINOv2-style self-supervised training of a ViT: student and EMA teacher, multi-crop,
  DINO loss with Sinkhorn-Knopp targets, AdamW with gradient clipping.

Config (MILABOX_CONFIG): arch, model (the architecture's keyword arguments, see models.py),
batch_size (per process), image_size (classifiers), lr, channels_last (classifiers, default false),
ddp (default false), nproc (CPU processes of a ddp run, default 1), seed (default 0); for vit also
crops {global_size, local_size, local_number}, dino {out_dim, hidden_dim, bottleneck_dim, nlayers,
momentum, teacher_temp, student_temp}, weight_decay, clip_grad; plus precision and the runtime's
warmup/steps/max_seconds. Images per second count every process' images (global batch).
"""

from __future__ import annotations

import copy
import json
import os

import milabox_runtime as mr

BATCHES = 2  # distinct synthetic batches, made before timing and cycled


def _positive_int(cfg: dict, key: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config {key!r} must be an integer >= 1, not {value!r}")
    return value


def _scaler(torch, run: mr.Run):
    # fp16 gradients underflow without loss scaling; fp32 and bf16 need none.
    return torch.amp.GradScaler(run.device_type, enabled=run.autocast_dtype == torch.float16)


def train_classifier(run: mr.Run) -> None:
    """Train a classifier on synthetic labelled images; DDP across processes when ``ddp`` is set."""
    import models
    import torch
    import torch.nn.functional as F

    cfg = run.config
    batch, size = _positive_int(cfg, "batch_size"), _positive_int(cfg, "image_size")
    num_classes = int(cfg["model"].get("num_classes", 1000))
    ddp = bool(cfg.get("ddp", False))
    rank, world = 0, 1
    if ddp:
        rank, world, _ = mr.distributed.init_process_group(run)
    try:
        seed = int(cfg.get("seed", 0))
        run.seed(seed)  # the same initial weights on every rank
        dev = run.device
        fmt = torch.channels_last if cfg.get("channels_last", False) else torch.contiguous_format
        with dev:  # initialised where it runs: seconds, not minutes, for the largest models
            model = models.build(cfg["arch"], cfg["model"])
        model = model.to(memory_format=fmt).train()
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=None if dev.type == "cpu" else [dev])
        optimizer = torch.optim.SGD(model.parameters(), lr=float(cfg.get("lr", 0.01)))
        scaler = _scaler(torch, run)
        run.seed(seed + 1 + rank)  # each rank its own images
        data = [(torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=fmt),
                 torch.randint(0, num_classes, (batch,), device=dev)) for _ in range(BATCHES)]

        for step in run.steps(items=batch * world):
            images, labels = data[step % BATCHES]
            optimizer.zero_grad(set_to_none=True)
            with run.autocast():
                loss = F.cross_entropy(model(images), labels)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            run.loss(loss)
    finally:
        if ddp:
            mr.distributed.destroy_process_group()


def train_dino(run: mr.Run) -> None:
    """DINOv2-style self-distillation of a ViT on synthetic multi-crop batches."""
    import dino
    import models
    import torch
    from torch import nn

    cfg = run.config
    batch = _positive_int(cfg, "batch_size")
    crops, head = cfg.get("crops", {}), cfg.get("dino", {})
    g_size, l_size = _positive_int(crops, "global_size", 224), _positive_int(crops, "local_size", 98)
    n_local = int(crops.get("local_number", 8))
    if n_local < 0:
        raise ValueError(f"config crops.local_number must be >= 0, not {n_local}")
    momentum = float(head.get("momentum", 0.994))
    teacher_temp, student_temp = float(head.get("teacher_temp", 0.07)), float(head.get("student_temp", 0.1))
    clip = float(cfg.get("clip_grad", 3.0))
    run.seed(int(cfg.get("seed", 0)))
    dev = run.device

    head_kwargs = {k: head[k] for k in ("out_dim", "hidden_dim", "bottleneck_dim", "nlayers") if k in head}
    with dev:  # initialised where it runs: ViT-g has 1.1 billion parameters
        backbone = models.build("vit", {**cfg["model"], "img_size": g_size})
        student = nn.ModuleDict({"backbone": backbone, "head": dino.DINOHead(backbone.embed_dim, **head_kwargs)})
    teacher = copy.deepcopy(student)  # starts equal to the student, then follows it by EMA
    for block in teacher["backbone"].blocks:
        block.drop_path = 0.0  # DINOv2 builds its teacher without stochastic depth
    student.train()
    teacher.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=float(cfg.get("lr", 3.5e-5)),
                                  weight_decay=float(cfg.get("weight_decay", 0.04)))
    scaler = _scaler(torch, run)
    params = list(student.parameters())

    def crop(n: int, s: int) -> torch.Tensor:
        return torch.randn(n * batch, 3, s, s, device=dev)  # n crops of every image, stacked crop-major

    data = [(crop(2, g_size), crop(n_local, l_size) if n_local else None) for _ in range(BATCHES)]

    def forward(net: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return net["head"](net["backbone"](x))

    # (student view, teacher view) pairs of different views: each global crop against the other's
    # target, each local crop against both.
    pairs = 2 + 2 * n_local
    for step in run.steps(items=batch):
        global_crops, local_crops = data[step % BATCHES]
        optimizer.zero_grad(set_to_none=True)
        with run.autocast():
            with torch.no_grad():
                targets = list(dino.sinkhorn_knopp(forward(teacher, global_crops), teacher_temp).chunk(2))
            total = dino.dino_loss(list(forward(student, global_crops).chunk(2)), targets, student_temp)
        # Global then local crops, each back-propagated at once: the targets are constants, so the
        # gradients are those of the summed loss, and only one pass' activations are alive at a time
        # (ViT-g at batch 32 then fits 80 GB without DINOv2's FSDP fp16 parameters).
        scaler.scale(total / pairs).backward()
        if local_crops is not None:
            with run.autocast():
                part = dino.dino_loss(list(forward(student, local_crops).chunk(n_local)), targets,
                                      student_temp, first_view=2)
            scaler.scale(part / pairs).backward()
            total = total.detach() + part.detach()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
        dino.ema_update(teacher, student, momentum)
        run.loss(total / pairs)


def bench(run: mr.Run) -> None:
    """Dispatch on ``arch``: ``vit`` trains DINO-style, the others are classifiers."""
    arch = run.config.get("arch")
    if arch == "vit":
        train_dino(run)
    elif arch in ("resnet", "convnext", "regnet"):
        train_classifier(run)
    else:
        raise ValueError(f"config 'arch' must be resnet, convnext, regnet or vit, not {arch!r}")


def wants_ddp() -> bool:
    """Whether MILABOX_CONFIG asks for a DDP run (a malformed config is left to mr.main to report)."""
    try:
        cfg = json.loads(os.environ.get("MILABOX_CONFIG") or "{}")
    except json.JSONDecodeError:
        return False
    return isinstance(cfg, dict) and bool(cfg.get("ddp"))


if __name__ == "__main__":
    # A ddp run spans every selected device: re-executed under torchrun when that means > 1 process.
    if wants_ddp():
        mr.distributed.launch_if_needed()
    mr.main(bench, defaults={"unit": "images/s"})
