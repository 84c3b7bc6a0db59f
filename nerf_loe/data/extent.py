"""Bounded or unbounded: what the training images say about how far a scene reaches.

A subject shown in isolation (transparent image borders, or a plain backdrop around it: objects
on white, turntable captures) lies inside a box around the cameras' target, so a bounded model of
that box is exact and cheapest. Any other image shows content up to its borders (a ground running
to the horizon, a room, the sky), which the cameras' box does not hold: such a scene is modelled
unbounded (scene contraction, a multi-level grid), as nerfacto models every scene.
"""

from __future__ import annotations

from typing import Literal

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
