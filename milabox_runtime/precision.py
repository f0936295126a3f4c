"""The precisions a benchmark config may name, and what each means for torch."""

from __future__ import annotations

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
    true fp32, and "tf32" must really use TF32 tensor cores. No effect on CPUs.

    Returns:
        Whether TF32 is now allowed.
    """
    allowed = PRECISIONS[precision][2]
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    return allowed
