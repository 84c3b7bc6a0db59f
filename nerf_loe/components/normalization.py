"""Map world positions into the unit box ``[0, 1)^d`` that tilings and grids index.

Bounded scenes: affine map of the scene box. Unbounded scenes: nerfstudio's scene contraction
(L-inf, into [-2, 2]^3) followed by a rescale to [0, 1]. Then clamp to ``[0, 1 - eps]``, so
``floor`` never yields an out-of-range cell.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.field_components.spatial_distortions import SceneContraction
from torch import Tensor, nn

from nerf_loe.components.tiling import EPS


class UnitBoxNormalizer(nn.Module):
    """World -> unit box, by the scene box or by contraction."""

    def __init__(self, aabb: Float[Tensor, "2 d"], contract: bool = False) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.contraction = SceneContraction(order=float("inf")) if contract else None

    def forward(self, positions: Float[Tensor, "*b d"]) -> Float[Tensor, "*b d"]:
        if self.contraction is not None:
            unit = (self.contraction(positions) + 2.0) / 4.0
        else:
            unit = (positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        return unit.clamp(0.0, 1.0 - EPS)

    def inside(self, positions: Float[Tensor, "*b d"]) -> Tensor:
        """True where a position lies in the normalised domain (always, when contracting)."""
        if self.contraction is not None:
            return torch.ones_like(positions[..., 0], dtype=torch.bool)
        return ((positions >= self.aabb[0]) & (positions <= self.aabb[1])).all(dim=-1)
