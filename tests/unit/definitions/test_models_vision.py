"""Full-size models of the vision (ResNet-152, ViT-g/14) and diffusion (Stable Diffusion 2) rows, built on the meta
device from their benchmark.toml: parameter counts against the named models' published figures; plus the JPEG
loader path of resnet50 (files written, decoded, cropped) on a few tiny images."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from types import ModuleType

import pytest

from milabox.definitions.benchmarks import all_benchmarks

torch = pytest.importorskip("torch")

_SIBLINGS = ("models", "vit", "dino", "loader")  # vision/main.py imports these by their bare names


@contextmanager
def _workload(row: str):
    """The row's main.py (imported from its folder, which is on sys.path meanwhile) and its [sizes.full] config."""
    bench = all_benchmarks()[row]
    saved = {name: sys.modules.pop(name) for name in _SIBLINGS if name in sys.modules}
    sys.path.insert(0, str(bench.folder))
    try:
        name = f"_milabox_vision_{bench.group}_main"
        spec = importlib.util.spec_from_file_location(name, bench.folder / "main.py")
        mod: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod, bench.config("full")
    finally:
        sys.path.remove(str(bench.folder))
        for name in _SIBLINGS:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _close(count: int, reference: int) -> bool:
    return abs(count - reference) <= 0.01 * reference


# ResNet-152: 60.2 M parameters (torchvision's ResNet152_Weights.IMAGENET1K_V1 "num_params": 60192808; He et al.
# 2016, "Deep Residual Learning for Image Recognition", 152 layers = bottleneck stages of 3, 8, 36, 3).
RESNET152_PARAMS = 60_192_808


@pytest.mark.parametrize("row", ["lightning-gpus", "resnet152-ddp-gpus"])
def test_vision_ddp_rows_are_resnet152(row):
    with _workload(row) as (_main, cfg):
        import models

        with torch.device("meta"):
            model = models.build(cfg["arch"], cfg["model"])
        bad = {**cfg["model"], "width": 56}
        with torch.device("meta"):
            wrong = models.build(cfg["arch"], bad)
    assert _close(_params(model), RESNET152_PARAMS), _params(model)
    assert not _close(_params(wrong), RESNET152_PARAMS)
    assert cfg["ddp"] and cfg["batch_size"] == 256 and cfg["precision"] == "bf16"
    assert all_benchmarks()[row].plan == "all_devices"
    assert cfg["optimizer"] == "adam" if row == "lightning-gpus" else cfg.get("optimizer", "sgd") == "sgd"


# DINOv2 ViT-g/14: 1136.5 M parameters (timm's vit_giant_patch14_dinov2.lvd142m model card, the DINOv2 backbone;
# Oquab et al. 2023, "DINOv2", Table 15: ViT-g/14, 1.1 B). timm counts the 518 px position embeddings (37 x 37
# + 1 tokens); at the 224 px global crops they are 16 x 16 + 1, 1.7 M fewer, well within the 1 %.
VIT_G14_PARAMS = 1_136_500_000


@pytest.mark.parametrize("row", ["dinov2-giant-single", "dinov2-giant-gpus"])
def test_vision_dinov2_backbone_is_vit_g14(row):
    with _workload(row) as (main, cfg), torch.device("meta"):
        student = main.build_student(cfg)
        wrong = main.build_student({**cfg, "model": {**cfg["model"], "embed_dim": 1408, "num_heads": 16}})
    backbone = student["backbone"]
    assert _close(_params(backbone), VIT_G14_PARAMS), _params(backbone)
    assert not _close(_params(wrong["backbone"]), VIT_G14_PARAMS)
    assert student["head"].last_layer.out_features == 131072
    assert (cfg.get("ddp", False), all_benchmarks()[row].plan) in ((False, "per_device"), (True, "all_devices"))


# Stable Diffusion 2's UNet: 865.9 M parameters (865,910,724: stabilityai/stable-diffusion-2 unet/config.json as
# diffusers' UNet2DConditionModel counts it; Rombach et al. 2022 give "865M" for the SD UNet). Its VAE
# (AutoencoderKL, 83.65 M) and OpenCLIP-H text tower (CLIPTextModel, 340.4 M) are the frozen encoders.
SD2_UNET_PARAMS = 865_910_724
SD_VAE_PARAMS = 83_653_863
SD2_TEXT_PARAMS = 340_387_840


@pytest.mark.parametrize("row", ["diffusion-single", "diffusion-gpus"])
def test_diffusion_full_size_is_stable_diffusion_2(row):
    pytest.importorskip("diffusers")
    with _workload(row) as (main, cfg), torch.device("meta"):
        unet, vae, text = main.build(cfg)
        wrong, _, _ = main.build({**cfg, "unet": {**cfg["unet"], "block_out_channels": [320, 640, 960, 1280]}})
    assert _close(_params(unet), SD2_UNET_PARAMS), _params(unet)
    assert not _close(_params(wrong), SD2_UNET_PARAMS)
    assert _close(_params(vae), SD_VAE_PARAMS), _params(vae)
    assert _close(_params(text), SD2_TEXT_PARAMS), _params(text)
    assert cfg["batch_size"] == 32 and cfg["resolution"] == 512 and cfg["precision"] == "bf16"
    assert (cfg.get("ddp", False), all_benchmarks()[row].plan) in ((False, "per_device"), (True, "all_devices"))


def test_vision_jpeg_loader_decodes_crops_and_shards(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with _workload("resnet50") as (_main, cfg):
        import loader

        small = {**cfg, "loader": {"images": 6, "image_size": 40, "num_workers": 0}, "model": {"num_classes": 3}}
        folder = loader.prepare(small)
        assert folder.parent == tmp_path and len(list(folder.glob("*/*.JPEG"))) == 6
        dl = loader.make_loader(small, batch=2, crop=16, rank=1, world=2, pin=False)
        images, labels = next(loader.batches(dl))
        box = loader.random_resized_crop_box(40, 30, __import__("random").Random(0))
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.float32
    assert labels.tolist() and all(0 <= v < 3 for v in labels.tolist())
    assert len(dl) == 1  # 6 files, 3 a rank, batches of 2 (drop_last)
    left, top, right, bottom = box
    assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
    assert cfg["loader"]["image_size"] == 384 and cfg["image_size"] == 224 and cfg["batch_size"] == 256
