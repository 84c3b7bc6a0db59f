"""Choose tiny-cuda-nn or PyTorch for the plain MLPs and encodings of a field.

tiny-cuda-nn is used only when it imports AND the module will live on CUDA; otherwise the torch
module with the same config runs (nerfstudio's own check looks at the import alone and then
builds tcnn modules on CPU, which fail). On CUDA without tcnn one warning is printed, once.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Literal

import torch

_warned = False


def tcnn_importable() -> bool:
    return importlib.util.find_spec("tinycudann") is not None


def choose_implementation(device: torch.device | str | None) -> Literal["tcnn", "torch"]:
    """``"tcnn"`` if tinycudann is installed and ``device`` is CUDA, else ``"torch"``."""
    global _warned
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if on_cuda and tcnn_importable():
        return "tcnn"
    if on_cuda and not _warned:
        _warned = True
        warnings.warn(
            "tinycudann is not installed: plain MLPs and encodings use the PyTorch implementation "
            "on CUDA (see README, 'tiny-cuda-nn').",
            stacklevel=2,
        )
    return "torch"
