"""Small constant tensors (bank counts, scales, chunk sizes) on the device where they are used.

A tensor built from Python numbers on a GPU is a copy from pageable host memory, which waits for
the GPU's queue: built per call, every trunk evaluation would stall on a few of them. Each distinct
constant is copied to each device once and reused (they are never written to).

Example:
    >>> a = device_constant((4, 4, 8), torch.device("cpu"))
    >>> a, a is device_constant((4, 4, 8), torch.device("cpu"))
    (tensor([4, 4, 8]), True)
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.cache
def device_constant(
    values: tuple[float, ...], device: torch.device, dtype: torch.dtype | None = None
) -> Tensor:
    """``torch.tensor(values, device=device, dtype=dtype)``, built once per argument set (outside
    inference mode, so autograd may save it whichever mode asked first)."""
    with torch.inference_mode(False):
        return torch.tensor(values, device=device, dtype=dtype)
