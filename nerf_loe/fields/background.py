"""Learned background: the colour of everything outside the scene box, as a function of direction.

A photo of a bounded scene also shows what lies beyond the box (walls, sky, a table's far side).
With a fixed colour the field has to fake that content with density on the box's faces, and once
the occupancy grid culls those faces the rays render the fixed colour instead. This small network
maps the ray direction to a colour (an environment map), filling each ray's remaining
transmittance. It costs one tiny MLP per ray, not per sample.
"""

from __future__ import annotations

from jaxtyping import Float
from nerfstudio.field_components.encodings import SHEncoding
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn


class DirectionalBackground(nn.Module):
    """RGB in [0, 1] from spherical harmonics of the (unit) ray direction."""

    def __init__(self, sh_levels: int = 4, hidden_dim: int = 32, num_layers: int = 2) -> None:
        super().__init__()
        self.encoding = SHEncoding(levels=sh_levels, implementation="torch")
        self.mlp = MLP(
            in_dim=self.encoding.get_out_dim(),
            num_layers=num_layers,
            layer_width=hidden_dim,
            out_dim=3,
            activation=nn.ReLU(),
            out_activation=nn.Sigmoid(),
            implementation="torch",
        )

    def forward(self, directions: Float[Tensor, "r 3"]) -> Float[Tensor, "r 3"]:
        return self.mlp(self.encoding(directions))
