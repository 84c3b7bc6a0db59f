"""What surrounds the subject of a dataset? Measured on the borders of its training images.

Object captures on a plain backdrop (Blender scenes composited on white, turntable photos) are
best rendered over that constant colour: a learned background would be a shortcut that competes
with the geometry. Images whose borders are transparent show an isolated subject too; their
transparency is composited on a known colour, so they have no backdrop colour of their own. Opaque
scenes (rooms, landscapes, content running past the scene box) have neither.

The measurement: the outermost rows and columns of up to ``max_images`` training images (evenly
spread). The backdrop is their median colour when at least ``share`` of those pixels lie within
``tolerance`` of it in every channel (and, with an alpha channel, all are opaque); the borders are
transparent when at least ``share`` of them have alpha below 1/2.

An alpha channel is read by the same measurement (:func:`alpha_rule`): transparent borders mean
an isolated subject, whose transparency the loss must honour; otherwise the alpha only marks holes
in an opaque scene (POV-Ray leaves the sky transparent when a scene has no sky sphere), and the
images are flattened onto white, as nerfstudio's blender-data loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor


def border_pixels(image: Float[Tensor, "h w c"]) -> Float[Tensor, "n c"]:
    """The outermost rows and columns of an image (each pixel once)."""
    rows = torch.cat([image[0], image[-1]])
    cols = torch.cat([image[1:-1, 0], image[1:-1, -1]])
    return torch.cat([rows, cols])


def sampled_borders(
    load: Callable[[int], Float[Tensor, "h w c"]], num_images: int, max_images: int = 16
) -> Float[Tensor, "n c"]:
    """Border pixels of up to ``max_images`` evenly spread images; ``load(i)`` gives image ``i`` as
    floats in [0, 1] (RGB or RGBA). Empty [0, 3] without images."""
    if num_images < 1:
        return torch.zeros(0, 3)
    picks = torch.linspace(0, num_images - 1, min(max_images, num_images)).round().long().tolist()
    return torch.cat([border_pixels(load(i).float()) for i in picks])


def plain_backdrop(
    borders: Float[Tensor, "n c"], tolerance: float = 0.05, share: float = 0.9
) -> tuple[float, float, float] | None:
    """The backdrop colour if the border pixels show a plain, opaque one, else None."""
    if borders.shape[0] == 0:
        return None
    if borders.shape[-1] == 4:
        if (borders[:, 3] < 1.0 - tolerance).any():  # transparency: composited on a known colour
            return None
        borders = borders[:, :3]
    colour = borders.median(dim=0).values
    agree = ((borders - colour).abs() <= tolerance).all(dim=-1).float().mean().item()
    return tuple(colour.tolist()) if agree >= share else None


AlphaRule = Literal["subject", "flatten"]


def alpha_rule(borders: Float[Tensor, "n c"], share: float = 0.9) -> AlphaRule | None:
    """How to train on the images' alpha channel: None without one; ``subject`` when the borders
    are transparent (an isolated subject: target and prediction are composited on a random colour,
    so matter on transparent pixels always costs loss); ``flatten`` otherwise (the transparency is
    a hole in a scene whose content runs past the borders, and past any box around the cameras'
    target: composited on random colours, that content would have to be forged inside the box, which
    every view does differently; flattened onto white, it falls to the background like any opaque
    photo's).
    """
    if borders.shape[-1] != 4:
        return None
    return "subject" if transparent_borders(borders, share) else "flatten"


def over(rgba: Float[Tensor, "*batch 4"], colour: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """Straight-alpha RGBA composited over ``colour``: ``rgb * a + colour * (1 - a)``."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + colour * (1.0 - alpha)


def transparent_borders(borders: Float[Tensor, "n c"], share: float = 0.9) -> bool:
    """True if at least ``share`` of the border pixels are transparent (alpha below 1/2)."""
    if borders.shape[0] == 0 or borders.shape[-1] != 4:
        return False
    return (borders[:, 3] < 0.5).float().mean().item() >= share
