"""TF32 per backend: what apply_tf32 sets and what the meta event reports (FAKE torch namespaces stand in for
CUDA, ROCm and XPU builds, which this machine does not have)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from milabox_runtime.precision import apply_tf32, tf32_in_effect


def _fake_torch(hip: str | None = None, xpu: bool = False, mkldnn_precision: bool = True) -> SimpleNamespace:
    """A FAKE torch: the backend flag objects apply_tf32 and tf32_in_effect touch, nothing else."""
    mkldnn = SimpleNamespace(matmul=SimpleNamespace(), conv=SimpleNamespace())
    if mkldnn_precision:
        mkldnn.matmul.fp32_precision = mkldnn.conv.fp32_precision = "none"
    state = {"matmul_precision": "highest"}
    return SimpleNamespace(
        backends=SimpleNamespace(cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=None)),
                                 cudnn=SimpleNamespace(allow_tf32=None), mkldnn=mkldnn),
        version=SimpleNamespace(hip=hip), xpu=SimpleNamespace(is_available=lambda: xpu),
        set_float32_matmul_precision=lambda p: state.__setitem__("matmul_precision", p),
        get_float32_matmul_precision=lambda: state["matmul_precision"])


@pytest.mark.parametrize(("precision", "expected"), [("tf32", "tf32"), ("fp32", "ieee")])
def test_xpu_tf32_goes_through_onednn_fake_torch(precision, expected):
    torch = _fake_torch(xpu=True)
    apply_tf32(torch, precision)
    assert torch.backends.mkldnn.matmul.fp32_precision == expected == torch.backends.mkldnn.conv.fp32_precision
    assert tf32_in_effect(torch, "xpu") is (precision == "tf32")


def test_xpu_tf32_on_torch_without_mkldnn_precision_uses_matmul_precision_fake_torch():
    torch = _fake_torch(xpu=True, mkldnn_precision=False)
    apply_tf32(torch, "tf32")
    assert torch.get_float32_matmul_precision() == "high" and tf32_in_effect(torch, "xpu") is True


def test_cpu_onednn_is_left_alone_fake_torch():
    torch = _fake_torch(xpu=False)
    apply_tf32(torch, "tf32")
    assert torch.backends.mkldnn.matmul.fp32_precision == "none" and tf32_in_effect(torch, "cpu") is False


def test_rocm_tf32_needs_hipblaslt_flag_and_mi300_fake_torch(monkeypatch):
    torch = _fake_torch(hip="7.0")
    apply_tf32(torch, "tf32")
    monkeypatch.delenv("HIPBLASLT_ALLOW_TF32", raising=False)
    assert tf32_in_effect(torch, "cuda", arch="gfx942:sramecc+:xnack-") is False  # labelled tf32, runs fp32
    monkeypatch.setenv("HIPBLASLT_ALLOW_TF32", "1")
    assert tf32_in_effect(torch, "cuda", arch="gfx942:sramecc+:xnack-") is True
    assert tf32_in_effect(torch, "cuda", arch="gfx90a:sramecc+:xnack-") is False  # MI250: no TF32
    apply_tf32(torch, "fp32")
    assert tf32_in_effect(torch, "cuda", arch="gfx942") is False


def test_cuda_tf32_needs_ampere_fake_torch():
    torch = _fake_torch()
    apply_tf32(torch, "tf32")
    assert tf32_in_effect(torch, "cuda", capability="8.0") is True
    assert tf32_in_effect(torch, "cuda", capability="7.0") is False


def test_rocm_vendor_data_sets_hipblaslt_and_xpu_counts_cards():
    from milabox.definitions.vendors import get_vendor
    assert dict(get_vendor("rocm").environment)["HIPBLASLT_ALLOW_TF32"] == "1"
    assert dict(get_vendor("xpu").environment)["ZE_FLAT_DEVICE_HIERARCHY"] == "COMPOSITE"
