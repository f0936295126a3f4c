"""The precisions a benchmark config may name, and what each means for torch."""

from __future__ import annotations

import os
from typing import Any

# name -> (dtype of tensors the benchmark creates, autocast dtype or None, TF32 matmuls allowed)
PRECISIONS: dict[str, tuple[str, str | None, bool]] = {
    "fp32": ("float32", None, False),
    "tf32": ("float32", None, True),
    "fp16": ("float16", "float16", False),
    "bf16": ("bfloat16", "bfloat16", False),
    "tf32-fp16": ("float32", "float16", True),  # fp32 weights, fp16 autocast, TF32 for what stays fp32
}


def check_precision(precision: Any) -> str:
    """Validate a precision name; missing or empty means fp32.

    Args:
        precision: config["precision"] or None.

    Returns:
        One of PRECISIONS.

    Raises:
        ValueError: an unknown precision.
    """
    if precision is None or precision == "":
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def storage_dtype(torch: Any, precision: str) -> Any:
    """The torch dtype for tensors a benchmark creates (e.g. matmul inputs) under ``precision``."""
    return getattr(torch, PRECISIONS[precision][0])


def autocast_dtype(torch: Any, precision: str) -> Any:
    """The torch dtype autocast runs in under ``precision``, or None when autocast stays off."""
    name = PRECISIONS[precision][1]
    return None if name is None else getattr(torch, name)


def apply_tf32(torch: Any, precision: str) -> bool:
    """Allow or forbid TF32 for fp32 matmuls and convolutions, explicitly, whatever torch's default.

    Set both ways because defaults differ between torch versions and vendors: "fp32" must mean
    true fp32, and "tf32" must really use TF32. CUDA and ROCm read the ``torch.backends.cuda``/``cudnn``
    flags (ROCm only with ``HIPBLASLT_ALLOW_TF32=1``, which vendors/rocm.toml sets); XPU goes through oneDNN,
    whose switch is ``torch.backends.mkldnn.matmul``/``conv.fp32_precision`` ("tf32" or "ieee", pytorch
    torch/backends/mkldnn/__init__.py; test/test_mkldnn.py sets them) or, in older torch,
    ``torch.set_float32_matmul_precision``. oneDNN on the CPU is left alone: no effect on CPUs.

    Returns:
        Whether TF32 is now allowed (what the hardware does with it: :func:`tf32_in_effect`).
    """
    allowed = PRECISIONS[precision][2]
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    if _on_xpu(torch):
        mkldnn = torch.backends.mkldnn
        if hasattr(getattr(mkldnn, "matmul", None), "fp32_precision"):
            mkldnn.matmul.fp32_precision = "tf32" if allowed else "ieee"
            mkldnn.conv.fp32_precision = "tf32" if allowed else "ieee"
        else:
            torch.set_float32_matmul_precision("high" if allowed else "highest")
    return allowed


def _on_xpu(torch: Any) -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


# ROCm GPUs with TF32 matrix cores: CDNA3 (MI300, gfx94x) and later (pytorch test/test_linalg.py: "TF32
# support is new and only for MI300+").
_ROCM_TF32_ARCHS = ("gfx94", "gfx95")


def tf32_in_effect(torch: Any, device_type: str, arch: str = "", capability: str = "") -> bool:
    """Whether fp32 matmuls on this device run as TF32 now, as torch reports it (for the ``meta`` event).

    Args:
        torch: the torch module.
        device_type: "cpu", "cuda" or "xpu".
        arch: ROCm's gcnArchName, e.g. "gfx942:sramecc+:xnack-" (empty elsewhere).
        capability: CUDA compute capability, e.g. "9.0" (empty elsewhere).

    Returns:
        False on CPUs, on hardware without TF32 (CUDA before Ampere 8.0; ROCm before MI300) and on ROCm
        without ``HIPBLASLT_ALLOW_TF32=1``; otherwise the flag torch holds.
    """
    if device_type == "xpu":
        matmul = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
        if hasattr(matmul, "fp32_precision"):
            return matmul.fp32_precision == "tf32"
        return torch.get_float32_matmul_precision() != "highest"
    if device_type != "cuda" or not torch.backends.cuda.matmul.allow_tf32:
        return False
    if getattr(torch.version, "hip", None):
        return os.environ.get("HIPBLASLT_ALLOW_TF32") == "1" and arch.startswith(_ROCM_TF32_ARCHS)
    return bool(capability) and float(capability) >= 8.0
