"""Does a dataset show a plain backdrop? Measured on the borders of its training images.

Object captures on a plain backdrop (Blender scenes composited on white, turntable photos) are
best rendered over that constant colour: a learned background would be a shortcut that competes
with the geometry. Opaque scenes (rooms, landscapes, content running past the scene box) have no
such colour. The test: the outermost rows and columns of up to ``max_images`` training images
(evenly spread); the backdrop is their median colour when at least ``share`` of those pixels lie
within ``tolerance`` of it in every channel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor


def border_pixels(image: Float[Tensor, "h w c"]) -> Float[Tensor, "n c"]:
    """The outermost rows and columns of an image (each pixel once)."""
    rows = torch.cat([image[0], image[-1]])
    cols = torch.cat([image[1:-1, 0], image[1:-1, -1]])
    return torch.cat([rows, cols])


def plain_backdrop(
    load: Callable[[int], Float[Tensor, "h w c"]],
    num_images: int,
    max_images: int = 16,
    tolerance: float = 0.05,
    share: float = 0.9,
) -> tuple[float, float, float] | None:
    """The backdrop colour if the images' borders show a plain one, else None.

    ``load(i)`` returns training image ``i`` as floats in [0, 1]. Images with an alpha channel
    have no backdrop of their own (None): their transparency is composited on a known colour.
    """
    if num_images < 1:
        return None
    picks = torch.linspace(0, num_images - 1, min(max_images, num_images)).round().long().tolist()
    borders = []
    for i in picks:
        image = load(i)
        if image.shape[-1] == 4:
            return None
        borders.append(border_pixels(image[..., :3].float()))
    pixels = torch.cat(borders)
    colour = pixels.median(dim=0).values
    agree = ((pixels - colour).abs() <= tolerance).all(dim=-1).float().mean().item()
    return tuple(colour.tolist()) if agree >= share else None
