"""Compute types: which precisions this machine can train in, as TrainingArguments flags."""

from __future__ import annotations

from typing import Any

import torch

from luodi.errors import BadInputError


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable."""
    return torch.cuda.is_available()


def bf16_supported() -> bool:
    """Whether bf16 autocast runs natively here: an Ampere+ GPU, or a CPU oneDNN supports in bf16
    (AVX-512 bf16 / AMX; older CPUs emulate it, slower than fp32)."""
    if cuda_available():
        return torch.cuda.is_bf16_supported()
    mkldnn = getattr(torch.ops, "mkldnn", None)
    check = getattr(mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def precision_args(compute: str) -> dict[str, Any]:
    """TrainingArguments flags for `compute` (fp32 | bf16 | fp16) on this machine.

    bf16 is autocast (weights stay fp32; the Trainer wraps forward in torch.autocast, on the CPU
    too when `use_cpu` is set). BadInputError when the hardware lacks the compute type.
    """
    use_cpu = not cuda_available()
    if compute == "fp32":
        return {"use_cpu": use_cpu}
    if compute == "bf16":
        if not bf16_supported():
            where = "this GPU (needs Ampere or newer)" if not use_cpu else "this CPU"
            raise BadInputError(
                f"compute bf16 is not supported on {where}: it lacks native bf16 "
                "(AVX-512 bf16/AMX on CPUs); use compute fp32"
            )
        return {"use_cpu": use_cpu, "bf16": True}
    if compute == "fp16":
        if use_cpu:
            raise BadInputError(
                "compute fp16 needs a CUDA GPU; on the CPU use bf16 (if supported) or fp32"
            )
        return {"use_cpu": False, "fp16": True}
    raise BadInputError(f"unknown compute type {compute!r}; known: fp32, bf16, fp16")
