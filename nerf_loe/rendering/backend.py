"""Backend choice: nerfacc's CUDA kernels for CUDA tensors, pure PyTorch otherwise.

nerfacc 0.5.2 ships CUDA kernels only (marching, packed rendering fail on a CPU), so the choice
follows the tensor's device; ``"torch"`` can be forced on CUDA (e.g. to cross-check).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from nerf_loe.errors import ConfigError

Backend = Literal["auto", "torch", "nerfacc"]


def resolve_backend(requested: Backend, like: Tensor) -> Literal["torch", "nerfacc"]:
    """The backend that runs for tensors on ``like``'s device."""
    if requested == "auto":
        return "nerfacc" if like.is_cuda else "torch"
    if requested == "nerfacc" and not like.is_cuda:
        raise ConfigError("rendering backend 'nerfacc' needs CUDA tensors; use 'auto' or 'torch' on the CPU")
    if requested not in ("torch", "nerfacc"):
        raise ConfigError(f"rendering backend {requested!r}: choose auto, torch or nerfacc")
    return requested
