"""LPIPS that never downloads.

torchmetrics' LPIPS loads torchvision's ImageNet AlexNet backbone, which torchvision downloads
into the torch hub cache on first use; offline, building it raises URLError and nerfstudio's
models die in ``populate_modules``. :class:`OfflineLPIPS` builds the metric only when the
backbone file is already cached; otherwise it warns once and returns NaN, so training and
``ns-eval`` carry on with PSNR and SSIM.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

_warned = False


def alexnet_weights_path() -> Path:
    """Where torchvision keeps the AlexNet weights that LPIPS needs."""
    from torchvision.models import AlexNet_Weights

    filename = AlexNet_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def lpips_available() -> bool:
    """True when the LPIPS backbone weights are present locally."""
    return alexnet_weights_path().is_file()


class OfflineLPIPS(nn.Module):
    """Drop-in for ``LearnedPerceptualImagePatchSimilarity`` that never touches the network.

    Called as ``lpips(a, b)`` on [B, 3, H, W] images; returns a scalar tensor, NaN when the
    backbone is not cached.
    """

    def __init__(self, normalize: bool = True, **kwargs) -> None:
        super().__init__()
        self.metric: nn.Module | None = None
        if lpips_available():
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.metric = LearnedPerceptualImagePatchSimilarity(normalize=normalize, **kwargs)
        else:
            global _warned
            if not _warned:
                _warned = True
                warnings.warn(
                    f"LPIPS unavailable: backbone weights not found at {alexnet_weights_path()} and "
                    "no download is attempted; reporting PSNR and SSIM only (lpips = nan).",
                    stacklevel=2,
                )

    def forward(self, preds: Tensor, target: Tensor) -> Tensor:
        if self.metric is None:
            return torch.tensor(float("nan"), device=preds.device)
        return self.metric(preds, target)


def patch_nerfstudio_lpips() -> None:
    """Make nerfstudio's built-in models build :class:`OfflineLPIPS`.

    Every nerfstudio 1.1.5 model imports ``LearnedPerceptualImagePatchSimilarity`` from
    ``torchmetrics.image.lpip`` inside ``populate_modules``, so rebinding it there suffices.
    """
    import torchmetrics.image
    import torchmetrics.image.lpip

    torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity = OfflineLPIPS
    torchmetrics.image.LearnedPerceptualImagePatchSimilarity = OfflineLPIPS
