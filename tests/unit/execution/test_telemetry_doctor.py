"""`milabox doctor`'s NVIDIA device check against a FAKE pynvml (no NVIDIA driver here)."""

from __future__ import annotations

import sys
import types

import pytest

from milabox.definitions.vendors import get_vendor
from milabox.execution.doctor import _devices


def _fake_pynvml(cuda: int) -> types.ModuleType:
    """A FAKE pynvml with one H100 whose driver runs CUDA up to ``cuda`` (NVML's 1000*major + 10*minor)."""
    nv = types.ModuleType("pynvml")
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    nv.nvmlSystemGetCudaDriverVersion = lambda: cuda
    return nv


@pytest.mark.parametrize(("cuda", "ok"), [(12080, False), (13000, True), (13020, True)])
def test_doctor_checks_the_drivers_cuda_fake_pynvml(monkeypatch, cuda, ok):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(cuda))
    check = _devices(get_vendor("cuda"))
    assert check.ok is ok
    assert f"driver runs CUDA up to {cuda // 1000}.{cuda % 1000 // 10}" in check.detail
    assert ("R580" in check.detail) is not ok  # says what to do
