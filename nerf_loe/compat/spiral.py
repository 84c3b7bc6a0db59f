"""``ns-render spiral`` on Blender data, which nerfstudio 1.1.5 crashes on.

Its spiral path builds each camera's look-at vector from the focal length, which nerfstudio's
Blender dataparser stores in float64, and crosses it with the float32 pose (``RuntimeError:
expected scalar type Float but found Double`` in ``camera_utils.viewmatrix``). The fix casts the
look-at direction and position to the pose's dtype; the spiral is otherwise nerfstudio's own.
"""

from __future__ import annotations

from torch import Tensor


def patch_nerfstudio_spiral() -> None:
    """Make ``camera_utils.viewmatrix`` accept mixed float32/float64 inputs (idempotent)."""
    from nerfstudio.cameras import camera_utils

    original = camera_utils.viewmatrix
    if getattr(original, "__nerf_loe_patched__", False):
        return

    def viewmatrix(lookat: Tensor, up: Tensor, pos: Tensor) -> Tensor:
        return original(lookat.to(up.dtype), up, pos.to(up.dtype))

    viewmatrix.__nerf_loe_patched__ = True  # type: ignore[attr-defined]
    viewmatrix.__doc__ = original.__doc__
    camera_utils.viewmatrix = viewmatrix
