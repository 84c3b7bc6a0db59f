"""Backend choice: nerfacc's CUDA kernels for CUDA tensors, pure PyTorch otherwise.

nerfacc 0.5.2 ships CUDA kernels only (marching, packed rendering fail on a CPU), so the choice
follows the tensor's device; ``"torch"`` can be forced on CUDA (e.g. to cross-check). Where
nerfacc's kernels cannot be built, ``"auto"`` warns once and uses PyTorch on CUDA too.
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

from torch import Tensor

from nerf_loe.compat.nerfacc_kernels import nerfacc_kernels_unavailable
from nerf_loe.errors import ConfigError

Backend = Literal["auto", "torch", "nerfacc"]


def resolve_backend(requested: Backend, like: Tensor) -> Literal["torch", "nerfacc"]:
    """The backend that runs for tensors on ``like``'s device."""
    if requested not in ("auto", "torch", "nerfacc"):
        raise ConfigError(f"rendering backend {requested!r}: choose auto, torch or nerfacc")
    if requested == "torch" or (requested == "auto" and not like.is_cuda):
        return "torch"
    if not like.is_cuda:
        raise ConfigError("rendering backend 'nerfacc' needs CUDA tensors; use 'auto' or 'torch' on the CPU")
    reason = nerfacc_kernels_unavailable()
    if reason is None:
        return "nerfacc"
    if requested == "nerfacc":
        raise ConfigError(
            f"rendering backend 'nerfacc': its CUDA kernels are unavailable ({reason}); use 'auto' or 'torch'"
        )
    _warn_fallback(reason)
    return "torch"


@functools.cache
def _warn_fallback(reason: str) -> None:
    warnings.warn(
        f"nerfacc's CUDA kernels are unavailable ({reason}): marching and rendering use the PyTorch "
        "backend on CUDA (same samples, slower)",
        stacklevel=3,
    )
