"""Mixed precision: bf16 where this machine computes it fast, else fp32 with one line saying why.

Under bf16 autocast (the training step's forward) the matrix products run in bf16 while the weights,
the optimizer and the gradients stay fp32. Also fp32: the task losses (autocast's cross-entropy),
mean pooling (pool() upcasts: a sum of bf16 states keeps ~3 significant digits), the distillation
distance, and evaluation, outside autocast: the scores are those of the model as saved and loaded.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import timeit

import torch

logger = logging.getLogger(__name__)
PRECISIONS = ("no", "bf16", "fp16", "auto")


def matmul_seconds(dtype: torch.dtype, size: int = 256, repeats: int = 3) -> float:
    """The best of `repeats` timings of one size x size matrix product in `dtype`, after a warm-up.
    Its own random generator: probing must not move the global one (dropout, heads)."""
    matrix = torch.rand(size, size, generator=torch.Generator().manual_seed(0)).to(dtype)
    matrix @ matrix
    return min(timeit.repeat(lambda: matrix @ matrix, number=1, repeat=repeats))


@functools.lru_cache(maxsize=None)
def cpu_bf16_is_fast() -> bool:
    """Whether a bf16 matrix product runs faster than an fp32 one on this CPU: CPUs with bf16 units
    (AVX512-BF16, AMX) run it about twice as fast, the others emulate it, far slower (Performance page).
    oneDNN's own check answers first where torch has it; a timing of a few ms confirms the speed."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # private: no public check exists
    if supported is not None and not supported():
        return False
    return matmul_seconds(torch.bfloat16) < matmul_seconds(torch.float32)


def check_mixed_precision(value: str) -> None:
    if value not in PRECISIONS:
        raise ValueError(f"unknown mixed precision {value!r}; choose one of {', '.join(PRECISIONS)}")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a GPU from Ampere on (compute capability 8), or a
    CPU with bf16 units. (Older GPUs such as Colab's T4 emulate it; torch may still call it supported.)"""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "cpu" and cpu_bf16_is_fast()


def resolve_mixed_precision(requested: str, device: torch.device) -> str:
    """The mixed precision to train with: `requested`, except bf16 on a CPU that would run it slower
    than fp32, which falls back to fp32 ("no") with one logged line; "auto" is bf16 where
    `bf16_is_fast`, else fp32, without a warning."""
    check_mixed_precision(requested)
    if requested == "auto":
        return "bf16" if bf16_is_fast(device) else "no"
    if requested == "bf16" and device.type == "cpu" and not cpu_bf16_is_fast():
        logger.warning("bf16: this CPU has no fast bf16 units; training in fp32")
        return "no"
    if requested == "fp16" and device.type != "cuda":  # what Accelerate did silently
        logger.warning("fp16: mixed precision in fp16 needs a GPU; training in fp32")
        return "no"
    return requested


class MixedPrecision:
    """The training step's autocast (of the forward alone; the backward follows its dtypes) and
    gradient scaler: on for fp16 (against underflow), off for bf16 and fp32."""

    def __init__(self, precision: str = "no", device: torch.device | str = "cpu"):
        self.precision, self.device_type = precision, torch.device(device).type
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=precision == "fp16")

    def autocast(self):
        if self.precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
