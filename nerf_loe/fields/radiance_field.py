"""Radiance field around any positional trunk: the one field of every method of this package.

position -> unit box (scene box or contraction) -> trunk -> density + geometry feature; colour
from a small head on [feature, SH(direction)]. The trunk is what differs between methods: LoE's
positional encoding and tiled-bank MLP (:class:`LoETrunk`, also the PE-MLP and Partition
baselines by its tiling) or the ASMR network; density and colour heads are shared, so methods
compare on their trunks alone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
from jaxtyping import Float, Int
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.encodings import NeRFEncoding, SHEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.mlp import MLP
from nerfstudio.fields.base_field import Field
from torch import Tensor, nn

from nerf_loe.components.frequency_mask import FrequencyMask
from nerf_loe.components.normalization import UnitBoxNormalizer
from nerf_loe.components.tiled_linear import ResidualForm
from nerf_loe.components.tiled_mlp import Activation, Init, TiledMLP
from nerf_loe.components.tiling import Tiling


class LoETrunk(nn.Module):
    """LoE's trunk: NeRF positional encoding of the unit-box position, then the tiled-bank MLP,
    whose banks the raw position picks.

    Args:
        tiling: bank layout of the trunk's layers.
        out_dim: 1 (raw density) + the geometry feature.
        hidden_dim: width.
        num_frequencies: positional-encoding frequencies.
        residual_banks, residual_scale, residual_form: see
            :class:`~nerf_loe.components.tiled_linear.TiledLinear` (its ``residual``, ``form``).
        init: see :class:`~nerf_loe.components.tiled_mlp.TiledMLP`.
        frequency_mask: FreeNeRF's release of the encoding's frequencies
            (:class:`~nerf_loe.components.frequency_mask.FrequencyMask`; the model sets its
            ``progress``).
    """

    def __init__(
        self,
        tiling: Tiling,
        out_dim: int,
        hidden_dim: int = 128,
        num_frequencies: int = 8,
        activation: Activation = "relu",
        residual_banks: bool = False,
        residual_scale: float = 1.0,
        frequency_mask: bool = False,
        init: Init = "kaiming",
        residual_form: ResidualForm = "full",
    ) -> None:
        super().__init__()
        self.frequency_mask = FrequencyMask(tiling.dim, num_frequencies) if frequency_mask else None
        self.encoding = NeRFEncoding(
            # NeRFEncoding multiplies by 2*pi: exponents from -1 make the lowest band sin(pi x),
            # which does not wrap around on the unit box.
            in_dim=tiling.dim,
            num_frequencies=num_frequencies,
            min_freq_exp=-1.0,
            max_freq_exp=num_frequencies - 2,
            include_input=True,
            implementation="torch",
        )
        self.mlp = TiledMLP(
            self.encoding.get_out_dim(),
            hidden_dim,
            out_dim,
            tiling,
            activation,
            residual_banks=residual_banks,
            residual_scale=residual_scale,
            init=init,
            residual_form=residual_form,
        )

    def forward(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n o"]:
        encoded = self.encoding(x)
        if self.frequency_mask is not None:
            encoded = self.frequency_mask(encoded)
        return self.mlp(encoded, x)

    def macs_per_sample(self) -> int:
        return self.mlp.macs_per_sample()

    def fixed_weights(self) -> AbstractContextManager[None]:
        """See :meth:`TiledMLP.fixed_weights`."""
        return self.mlp.fixed_weights()

    #: what the region map shows: the expert (bank) a position uses in a layer
    region_name = "bank"

    def region_levels(self) -> int:
        return self.mlp.tiling.num_layers

    def region_ids(self, x: Float[Tensor, "n d"], level: int) -> Int[Tensor, " n"]:
        """The bank of layer ``level`` that weighs most at unit-box positions ``x``."""
        return self.mlp.tiling.dominant_bank(x, level)


class RadianceField(Field):
    """Density and view-dependent colour from a positional trunk.

    Args:
        aabb: scene box [2, 3] (world units).
        trunk: unit-box positions [n, 3] -> [n, 1 + geo_feat_dim] (raw density, then the geometry
            feature), with ``macs_per_sample()``.
        geo_feat_dim: feature passed from the trunk to the colour head.
        color_hidden_dim, color_layers: the colour head.
        sh_levels: spherical-harmonics degree + 1 of the direction encoding.
        density_bias: added to the trunk's raw density before ``exp``: the density of empty space
            at initialisation is about ``exp(density_bias)`` per scene-box side (see below).
        contract: unbounded scene (scene contraction) instead of the scene box.
        implementation: "torch" or "tcnn" for the colour head and direction encoding.
    """

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        trunk: nn.Module,
        geo_feat_dim: int = 15,
        color_hidden_dim: int = 64,
        color_layers: int = 2,
        sh_levels: int = 4,
        density_bias: float = -1.0,
        contract: bool = False,
        implementation: Literal["tcnn", "torch"] = "torch",
    ) -> None:
        super().__init__()
        self.geo_feat_dim = geo_feat_dim
        self.density_bias = density_bias
        # Densities are per side of the scene box (the contracted inner region's side, 2, when
        # unbounded), so the same network, initialisation and grid threshold work at any scale of
        # the world: a scene normalised to a 4x smaller box needs no 4x larger densities.
        self.length_scale = 2.0 if contract else float((aabb[1] - aabb[0]).max())
        self.implementation = implementation
        self.normalizer = UnitBoxNormalizer(aabb, contract=contract)
        self.trunk = trunk
        self.direction_encoding = SHEncoding(levels=sh_levels, implementation=implementation)
        self.color_head = MLP(
            in_dim=geo_feat_dim + self.direction_encoding.get_out_dim(),
            num_layers=color_layers,
            layer_width=color_hidden_dim,
            out_dim=3,
            activation=nn.ReLU(),
            out_activation=nn.Sigmoid(),
            implementation=implementation,
        )

    def trunk_outputs(self, positions: Float[Tensor, "n 3"]) -> tuple[Tensor, Tensor]:
        """Density [n, 1] and geometry feature [n, geo_feat_dim] at world positions."""
        n = positions.shape[0]
        if n == 0:  # a batch the grid culled entirely: evaluate one point so the graph stays connected
            positions = positions.new_zeros(1, 3)
        x = self.normalizer(positions)
        raw = self.trunk(x)
        # Capped where trunc_exp stops its gradient: exp(15) already makes any step opaque, and an
        # unbounded exp overflows to inf on a diverging batch, then NaN in the rendering sums.
        density = trunc_exp(torch.clamp(raw[:, :1] + self.density_bias, max=15.0)) / self.length_scale
        density = density * self.normalizer.inside(positions)[:, None]
        return density[:n], raw[:n, 1:]

    def density_at(self, positions: Float[Tensor, "n 3"]) -> Float[Tensor, " n"]:
        """Density at world positions: the function the renderer and occupancy grid call."""
        return self.trunk_outputs(positions)[0][:, 0]

    def get_density(self, ray_samples: RaySamples) -> tuple[Tensor, Tensor]:
        positions = ray_samples.frustums.get_positions()
        shape = positions.shape[:-1]
        density, feature = self.trunk_outputs(positions.reshape(-1, 3))
        return density.reshape(*shape, 1), feature.reshape(*shape, self.geo_feat_dim)

    def _colors(
        self, features: Float[Tensor, "n g"], directions: Float[Tensor, "n 3"]
    ) -> Float[Tensor, "n 3"]:
        if self.implementation == "tcnn":  # tcnn's SH takes directions mapped to [0, 1]
            directions = (directions + 1.0) / 2.0
        return self.color_head(torch.cat([features, self.direction_encoding(directions)], dim=-1))

    def colors_at(
        self, positions: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"]
    ) -> Float[Tensor, "n 3"]:
        """Colour seen along ``directions`` at world ``positions`` (e.g. a learned background)."""
        return self._colors(self.trunk_outputs(positions)[1], directions)

    def fixed_weights(self) -> AbstractContextManager[None]:
        """A scope in which passes without gradients may reuse weights the trunk forms from its
        parameters (LoE's residual bank sums, see :meth:`TiledMLP.fixed_weights`); parameters must
        not change within. Nothing for trunks that form none."""
        scope = getattr(self.trunk, "fixed_weights", None)
        return scope() if scope is not None else nullcontext()

    def region_ids_at(self, positions: Float[Tensor, "n 3"], level: int) -> Int[Tensor, " n"] | None:
        """The trunk's region (bank, cell) of ``level`` at world positions, if it has regions."""
        if not hasattr(self.trunk, "region_ids"):
            return None
        return self.trunk.region_ids(self.normalizer(positions), level)

    def get_outputs(
        self, ray_samples: RaySamples, density_embedding: Tensor | None = None
    ) -> dict[FieldHeadNames, Tensor]:
        assert density_embedding is not None
        directions = ray_samples.frustums.directions.reshape(-1, 3)
        rgb = self._colors(density_embedding.reshape(-1, self.geo_feat_dim), directions)
        return {FieldHeadNames.RGB: rgb.reshape(*density_embedding.shape[:-1], 3)}

    def complexity(self) -> dict[str, tuple[int, int]]:
        """MACs per sample (from the layer configuration, so tiny-cuda-nn modules count the same) and
        parameter count, by part."""
        head = self.color_head
        widths = [head.in_dim] + [head.layer_width] * (head.num_layers - 1) + [head.out_dim]
        head_macs = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
        return {
            "trunk": (self.trunk.macs_per_sample(), sum(p.numel() for p in self.trunk.parameters())),
            "color_head": (head_macs, sum(p.numel() for p in self.color_head.parameters())),
        }
