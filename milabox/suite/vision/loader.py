"""The JPEG loader path of Milabench's torchvision benchmarks, in plain torch + pillow (no torchvision).

Milabench's ``--loader pytorch`` reads FakeImageNet (benchmate/datagen.py: random uint8 images of 3 x 384 x 384
saved as JPEG, class folders ``offset % 1000``) through ``datasets.ImageFolder`` with RandomResizedCrop(224),
RandomHorizontalFlip, ToTensor and Normalize, in a DataLoader with workers (benchmate/dataloader.py). Here:

- :func:`write_images`: the same kind of folder, written once into a temporary folder (seeded noise images);
- :class:`JpegFolder`: a Dataset of those files, decoded by pillow, random-resized-cropped and flipped as
  torchvision does for PIL images, converted to a normalised float tensor;
- :func:`make_loader`: the DataLoader (workers, pinned memory on accelerators, a DistributedSampler across
  ranks), cycled for as many batches as the run wants by :func:`batches`.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

MEAN = (0.485, 0.456, 0.406)  # ImageNet normalisation, as benchmate's image_transforms()
STD = (0.229, 0.224, 0.225)
DONE = "complete"  # marker file: the folder holds every image


def folder_for(cfg: dict) -> Path:
    """Where the config's images live (one folder per parameter set, reused by later runs in the container)."""
    spec = cfg["loader"]
    classes = int(cfg["model"].get("num_classes", 1000))
    name = f"milabox-fakeimagenet-{int(spec['images'])}x{int(spec['image_size'])}-c{classes}-s{int(cfg.get('seed', 0))}"
    return Path(tempfile.gettempdir()) / name


def write_images(folder: Path, images: int, side: int, seed: int, classes: int = 1000) -> Path:
    """Write ``images`` random ``side`` x ``side`` RGB JPEGs into ``folder/<class>/<class>_<i>.JPEG`` (once).

    Args:
        folder: target folder; left as it is when it already holds a complete set.
        images: how many files.
        side: image side in pixels.
        seed: seed of the pixel values.
        classes: class folders (image i goes to class i % classes, as benchmate's datagen).

    Returns:
        The folder.
    """
    if (folder / DONE).is_file():
        return folder
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        label = i % classes
        pixels = torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=gen)
        path = folder / str(label) / f"{label}_{i}.JPEG"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels.numpy(), "RGB").save(path)  # pillow's default JPEG quality (75), as datagen
    (folder / DONE).write_text(f"{images}\n")
    return folder


def random_resized_crop_box(width: int, height: int, rng: random.Random, scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: a (left, top, right, bottom) box of random area and aspect."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    in_ratio = width / height  # fallback: the central crop of the clamped aspect ratio
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class JpegFolder(torch.utils.data.Dataset):
    """Class-folder JPEGs: pillow decode, random resized crop to ``crop`` px, random flip, normalised CHW float."""

    def __init__(self, folder: Path, crop: int) -> None:
        self.files = sorted(p for p in Path(folder).glob("*/*.JPEG"))
        if not self.files:
            raise ValueError(f"{folder}: no JPEG files")
        self.labels = [int(p.parent.name) for p in self.files]
        self.crop = crop
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.files[index]) as img:
            img = img.convert("RGB")  # decodes
        rng = random  # seeded per worker by the DataLoader
        box = random_resized_crop_box(*img.size, rng)
        img = img.resize((self.crop, self.crop), Image.Resampling.BILINEAR, box=box)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(self.crop, self.crop, 3)
        x = x.permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std, self.labels[index]


def make_loader(cfg: dict, batch: int, crop: int, rank: int, world: int, pin: bool) -> torch.utils.data.DataLoader:
    """The DataLoader of the config's ``loader`` table {images, image_size, num_workers} (files written first).

    Local rank 0 writes the files; callers in a process group wait at a barrier before building this.
    """
    spec = cfg["loader"]
    folder = folder_for(cfg)
    dataset = JpegFolder(folder, crop)
    workers = int(spec.get("num_workers", 8))
    sampler = None
    if world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, num_replicas=world, rank=rank,
                                                                  seed=int(cfg.get("seed", 0)))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                                       num_workers=workers, pin_memory=pin, drop_last=True,
                                       persistent_workers=workers > 0,
                                       generator=torch.Generator().manual_seed(int(cfg.get("seed", 0)) + rank))


def prepare(cfg: dict) -> Path:
    """Write the config's images if this process is the node's first (LOCAL_RANK 0); returns their folder."""
    spec = cfg["loader"]
    folder = folder_for(cfg)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        write_images(folder, int(spec["images"]), int(spec["image_size"]), int(cfg.get("seed", 0)),
                     classes=int(cfg["model"].get("num_classes", 1000)))
    return folder


def batches(loader: torch.utils.data.DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, epoch after epoch, without end."""
    epoch = 0
    while True:
        if isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
