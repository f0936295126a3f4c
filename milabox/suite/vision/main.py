"""Vision training throughput (images/s) from a random init on synthetic images.

Two workloads, picked by the config's ``arch``:

- a classifier (``resnet``, ``convnext``, ``regnet``): synthetic images and labels, cross-entropy,
  SGD or Adam, as Milabench's torchvision and lightning benchmarks train, from JPEG files decoded by DataLoader
  workers or from ready-made device tensors; with ``ddp = true`` the same step runs under
  DistributedDataParallel in one process a device (torchrun, see milabox_runtime.distributed);
- ``vit``: DINOv2-style self-supervised training of a ViT: student and EMA teacher, multi-crop,
  DINO loss with Sinkhorn-Knopp targets, AdamW with gradient clipping (also under DDP with ``ddp = true``).

Config (MILABOX_CONFIG): arch, model (the architecture's keyword arguments, see models.py),
batch_size (per process), image_size (classifiers), lr, channels_last (classifiers, default false),
ddp (default false), nproc (CPU processes of a ddp run, default 1), seed (default 0); for vit also
crops {global_size, local_size, local_number}, dino {out_dim, hidden_dim, bottleneck_dim, nlayers,
momentum, teacher_temp, student_temp}, weight_decay, clip_grad; a classifier's optimizer (sgd or adam, default
sgd) and loader {images, image_size, num_workers} (JPEG files through DataLoader workers, see loader.py; absent:
ready-made device tensors); plus precision and the runtime's warmup/steps/max_seconds. Rates count every
process' images (global batch); the vit rate counts global crops (2 an image), as Milabench's dinov2 does.
"""

from __future__ import annotations

import copy
import itertools

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


def _optimizer(torch, cfg: dict, params):
    name = cfg.get("optimizer", "sgd")
    lr = float(cfg.get("lr", 0.01))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"config 'optimizer' must be sgd or adam, not {name!r}")


def train_classifier(run: mr.Run) -> None:
    """Train a classifier on synthetic labelled images; DDP across processes when ``ddp`` is set.

    With a ``loader`` table the images are JPEG files decoded by DataLoader workers (loader.py), as
    Milabench's ``--loader pytorch``; without it, ready-made tensors on the device (``synthetic_fixed``).
    """
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
        optimizer = _optimizer(torch, cfg, model.parameters())
        scaler = _scaler(torch, run)
        run.seed(seed + 1 + rank)  # each rank its own images
        if "loader" in cfg:
            data = _jpeg_batches(run, cfg, batch, size, rank, world, ddp)
        else:
            fixed = [(torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=fmt),
                      torch.randint(0, num_classes, (batch,), device=dev)) for _ in range(BATCHES)]
            data = itertools.cycle(fixed)

        for _ in run.steps(items=batch * world):
            images, labels = next(data)
            if images.device != dev:
                images = images.to(dev, non_blocking=True).contiguous(memory_format=fmt)
                labels = labels.to(dev, non_blocking=True)
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


def _jpeg_batches(run: mr.Run, cfg: dict, batch: int, size: int, rank: int, world: int, ddp: bool):
    """Write the JPEG files (untimed, once a node), then an endless iterator of decoded batches."""
    import loader
    import torch

    loader.prepare(cfg)
    if ddp and world > 1:
        torch.distributed.barrier()  # the node's first rank has written the files
    dl = loader.make_loader(cfg, batch, size, rank, world, pin=run.device.type != "cpu")
    if len(dl) < 1:
        raise ValueError(f"config loader.images ({cfg['loader']['images']}) is below one batch a rank "
                         f"({batch} x {world} processes)")
    return loader.batches(dl)


def build_student(cfg: dict):
    """The DINO student of a ``vit`` config: the ViT backbone and the projection head (``net(x)`` = head(backbone(x)))."""
    import dino
    import models
    from torch import nn

    class Student(nn.ModuleDict):
        def forward(self, x):
            return self["head"](self["backbone"](x))

    head = cfg.get("dino", {})
    head_kwargs = {k: head[k] for k in ("out_dim", "hidden_dim", "bottleneck_dim", "nlayers") if k in head}
    g_size = _positive_int(cfg.get("crops", {}), "global_size", 224)
    backbone = models.build("vit", {**cfg["model"], "img_size": g_size})
    return Student({"backbone": backbone, "head": dino.DINOHead(backbone.embed_dim, **head_kwargs)})


def train_dino(run: mr.Run) -> None:
    """DINOv2-style self-distillation of a ViT on synthetic multi-crop batches; DDP across processes with ``ddp``."""
    import contextlib

    import dino
    import torch

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
    ddp = bool(cfg.get("ddp", False))
    rank, world = 0, 1
    if ddp:
        rank, world, _ = mr.distributed.init_process_group(run)
    try:
        seed = int(cfg.get("seed", 0))
        run.seed(seed)  # the same initial weights on every rank
        dev = run.device
        with dev:  # initialised where it runs: ViT-g has 1.1 billion parameters
            student = build_student(cfg)
        teacher = copy.deepcopy(student)  # starts equal to the student, then follows it by EMA
        for block in teacher["backbone"].blocks:
            block.drop_path = 0.0  # DINOv2 builds its teacher without stochastic depth
        student.train()
        teacher.eval().requires_grad_(False)
        trained = student
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            trained = DistributedDataParallel(student, device_ids=None if dev.type == "cpu" else [dev])
        optimizer = torch.optim.AdamW(student.parameters(), lr=float(cfg.get("lr", 3.5e-5)),
                                      weight_decay=float(cfg.get("weight_decay", 0.04)))
        scaler = _scaler(torch, run)
        params = list(student.parameters())
        run.seed(seed + 1 + rank)  # each rank its own images

        def crop(n: int, s: int) -> torch.Tensor:
            return torch.randn(n * batch, 3, s, s, device=dev)  # n crops of every image, stacked crop-major

        data = [(crop(2, g_size), crop(n_local, l_size) if n_local else None) for _ in range(BATCHES)]
        # The first backward of a step (global crops) only accumulates; the last one all-reduces the sum.
        first_sync = trained.no_sync if ddp and n_local else contextlib.nullcontext

        # (student view, teacher view) pairs of different views: each global crop against the other's
        # target, each local crop against both.
        pairs = 2 + 2 * n_local
        # Milabench counts collated_global_crops.shape[0] (benchmarks/dinov2/voirfile.py): 2 global crops an image.
        for step in run.steps(items=2 * batch * world):
            global_crops, local_crops = data[step % BATCHES]
            optimizer.zero_grad(set_to_none=True)
            with first_sync():
                with run.autocast():
                    with torch.no_grad():
                        targets = list(dino.sinkhorn_knopp(teacher(global_crops), teacher_temp).chunk(2))
                    total = dino.dino_loss(list(trained(global_crops).chunk(2)), targets, student_temp)
                # Global then local crops, each back-propagated at once: the targets are constants, so the
                # gradients are those of the summed loss, and only one pass' activations are alive at a time
                # (ViT-g at batch 32 then fits 80 GB without DINOv2's FSDP fp16 parameters).
                scaler.scale(total / pairs).backward()
            if local_crops is not None:
                with run.autocast():
                    part = dino.dino_loss(list(trained(local_crops).chunk(n_local)), targets,
                                          student_temp, first_view=2)
                scaler.scale(part / pairs).backward()
                total = total.detach() + part.detach()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
            scaler.step(optimizer)
            scaler.update()
            dino.ema_update(teacher, student, momentum)
            run.loss(total / pairs)
    finally:
        if ddp:
            mr.distributed.destroy_process_group()


def bench(run: mr.Run) -> None:
    """Dispatch on ``arch``: ``vit`` trains DINO-style, the others are classifiers."""
    arch = run.config.get("arch")
    if arch == "vit":
        train_dino(run)
    elif arch in ("resnet", "convnext", "regnet"):
        train_classifier(run)
    else:
        raise ValueError(f"config 'arch' must be resnet, convnext, regnet or vit, not {arch!r}")



if __name__ == "__main__":
    # A ddp run spans every selected device: re-executed under torchrun when that means > 1 process.
    if bool(mr.distributed.config_value("ddp", False)):
        mr.distributed.launch_if_needed()
    mr.main(bench, defaults={"unit": "images/s"})
