"""Bounded or unbounded: what the training images say about how far a scene reaches.

A subject shown in isolation (transparent image borders, or a plain backdrop around it: objects
on white, turntable captures) lies inside a box around the cameras' target, so a bounded model of
that box is exact and cheapest. Any other image shows content up to its borders (a ground running
to the horizon, a room, the sky), which the cameras' box does not hold: such a scene is modelled
unbounded (scene contraction, a multi-level grid), as nerfacto models every scene.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

SceneExtent = Literal["bounded", "unbounded"]


def scene_extent(
    backdrop: tuple[float, float, float] | None, transparent_borders: bool
) -> tuple[SceneExtent, str]:
    """The extent to model, and the reason in words (for the training log).

    ``backdrop``: the images' plain backdrop colour, or None; ``transparent_borders``: the images'
    borders are transparent (both from :mod:`nerf_loe.data.backdrop`).
    """
    if transparent_borders:
        return "bounded", "the images' borders are transparent (an isolated subject)"
    if backdrop is not None:
        colour = ", ".join(f"{c:.2f}" for c in backdrop)
        return "bounded", f"the images show a plain backdrop ({colour}) around the subject"
    return "unbounded", "the images show content up to their borders (no plain backdrop, no transparency)"


#: A box fitted around the cameras' target reaches this share of the nearest camera's distance.
BOX_FRACTION = 0.4


def focus_point(
    positions: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"]
) -> Float[Tensor, " 3"] | None:
    """The point nearest to every camera's optical axis (least squares): where an orbit of cameras
    looks. None when the axes are (nearly) parallel, as in a forward-facing capture."""
    d = torch.nn.functional.normalize(directions.double(), dim=-1)
    project = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # off-axis part
    system = project.sum(0)
    if torch.linalg.cond(system) > 1e4:
        return None
    return torch.linalg.solve(system, (project @ positions.double()[:, :, None]).sum(0))[:, 0].float()


def box_outside_cameras(
    aabb: Float[Tensor, "2 3"],
    positions: Float[Tensor, "n 3"],
    directions: Float[Tensor, "n 3"],
    fraction: float = BOX_FRACTION,
) -> tuple[Float[Tensor, "2 3"], str] | None:
    """A bounded model's box must leave the cameras outside: a camera inside it can explain its
    own view with matter just in front of its lens, and every view does (nerfstudio-data scales the
    cameras into [-1, 1], its own scene box). When a camera lies in ``aabb``, the box becomes the
    cube around the cameras' focus point reaching ``fraction`` of the nearest camera's distance
    (every camera is then outside it; content beyond falls to the background). None when the box
    is already clear, or the cameras share no focus (forward-facing: model it unbounded).
    """
    inside = ((positions >= aabb[0]) & (positions <= aabb[1])).all(dim=-1)
    if not bool(inside.any()):
        return None
    center = focus_point(positions, directions)
    if center is None:
        return None
    nearest = float((positions - center).norm(dim=-1).min())
    half = fraction * nearest
    fitted = torch.stack([center - half, center + half])
    reason = (
        f"{int(inside.sum())} of {len(positions)} training cameras lie inside the scene box: box "
        f"of half-size {half:.3g} around their focus point ({fraction:g} of the nearest camera's distance)"
    )
    return fitted, reason
