"""The Neural Implicit Dictionary's trunk for radiance fields: one shared network, E experts in its
last layer, each scene a sparse signed combination of them.

position -> NeRF positional encoding -> ReLU MLP (shared by every scene) -> the experts' linear
maps, mixed by scene ``s``'s gates ``g_s = topk(code_s)`` plus its bias
(:class:`~nerf_loe.components.dictionary.DictionaryHead`) -> raw density and geometry feature.
Codes are free per-scene embeddings of E gate logits (an auto-decoder): training a dictionary
learns trunk, experts and codes together; fitting a new scene freezes the dictionary and solves
only a code and bias, started at the mean of the training codes.

The trunk renders one scene at a time: the model sets :attr:`DictionaryTrunk.scene` before a
scene's rays (each scene has its own occupancy grid too).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor, nn

from nerf_loe.components.dictionary import DictionaryHead
from nerf_loe.components.gating import balancing_loss, signed_top_k
from nerf_loe.errors import ConfigError


def _unknown_family_if_missing(state: dict, prefix: str, *_) -> None:
    """Checkpoints written before the family was kept load with an unknown family."""
    state.setdefault(prefix + "_extra_state", {"family": None})


class DictionaryTrunk(nn.Module):
    """Shared trunk, E experts, per-scene codes (see the module docstring).

    Args:
        num_scenes: codes to hold (the collection's training scenes; 1 when fitting a scene).
        out_dim: 1 (raw density) + the geometry feature.
        num_experts: E.
        top_k: experts each scene keeps after the dense warm-up.
        hidden_dim, num_layers: the shared ReLU MLP.
        num_frequencies: positional-encoding frequencies.
        family: the object family of the scenes it learns (None: unknown), kept in checkpoints so a
            dictionary is not fitted to a scene of another family.
        residual_dim: width of a small residual field (two ReLU layers over the same encoding)
            added to the mixed output, zero at the start: what a fitted scene has that the
            dictionary cannot express (0: none).
    """

    def __init__(
        self,
        num_scenes: int,
        out_dim: int,
        num_experts: int = 64,
        top_k: int = 8,
        hidden_dim: int = 128,
        num_layers: int = 3,
        num_frequencies: int = 8,
        family: str | None = None,
        residual_dim: int = 0,
    ) -> None:
        super().__init__()
        self.family = family
        self._register_load_state_dict_pre_hook(_unknown_family_if_missing)
        if not 1 <= top_k <= num_experts:
            raise ConfigError(
                f"--pipeline.model.top-k {top_k}: give 1 <= top-k <= num-experts ({num_experts})"
            )
        if num_scenes < 1 or hidden_dim < 1 or num_layers < 1:
            raise ConfigError("the dictionary needs at least one scene, hidden-dim >= 1 and num-layers >= 1")
        self.encoding = NeRFEncoding(
            in_dim=3,
            num_frequencies=num_frequencies,
            min_freq_exp=-1.0,
            max_freq_exp=num_frequencies - 2,
            include_input=True,
            implementation="torch",
        )
        widths = [self.encoding.get_out_dim()] + [hidden_dim] * num_layers
        self.mlp = nn.Sequential(
            *[m for a, b in zip(widths[:-1], widths[1:], strict=True) for m in (nn.Linear(a, b), nn.ReLU())]
        )
        self.head = DictionaryHead(hidden_dim, num_experts, out_dim)
        self.codes = nn.Parameter(torch.randn(num_scenes, num_experts) / num_experts**0.5)
        self.scene_bias = nn.Parameter(torch.zeros(num_scenes, out_dim))
        self.residual: nn.Sequential | None = None
        if residual_dim > 0:
            width = self.encoding.get_out_dim()
            self.residual = nn.Sequential(
                nn.Linear(width, residual_dim), nn.ReLU(), nn.Linear(residual_dim, out_dim)
            )
            nn.init.zeros_(self.residual[-1].weight)  # starts as the dictionary alone
            nn.init.zeros_(self.residual[-1].bias)
        self.residual_energy = torch.zeros(())
        """Mean squared residual output of the last forward with gradients (for its penalty)."""
        self.top_k = top_k
        self.register_buffer("dense", torch.tensor(True))  # the warm-up: every expert kept
        self.scene = 0
        self.render_top_k = 0
        """Experts kept when rendering (eval mode, no gradients), to see what each adds; 0: as
        trained. The viewer's top-k slider sets it."""

    def gates(self, scenes: Tensor | None = None) -> Float[Tensor, "s e"]:
        """Gates of ``scenes`` (all when None): dense in the warm-up, signed top-k after it (or
        ``render_top_k`` when rendering)."""
        codes = self.codes if scenes is None else self.codes[scenes]
        if self.render_top_k > 0 and not self.training and not torch.is_grad_enabled():
            return signed_top_k(codes, min(self.render_top_k, codes.shape[-1]))
        return codes if bool(self.dense) else signed_top_k(codes, self.top_k)

    def forward(self, x: Float[Tensor, "n 3"]) -> Float[Tensor, "n o"]:
        encoded = self.encoding(x)
        scene = torch.full((len(x),), self.scene, dtype=torch.long, device=x.device)
        out = self.head(self.mlp(encoded), scene, self.gates(), self.scene_bias)
        if self.residual is None:
            return out
        residual = self.residual(encoded)
        if torch.is_grad_enabled():
            self.residual_energy = residual.square().mean()
        return out + residual

    def expert_energy(self, x: Float[Tensor, "n 3"]) -> Float[Tensor, "n e"]:
        """``|g_sj (W_j h + b_j)|^2`` per expert ``j`` at unit-box positions ``x`` of the current
        scene: how much each expert contributes there (zero for experts the scene does not keep)."""
        h = self.mlp(self.encoding(x))
        gates = self.gates()[self.scene]
        outputs = torch.einsum("nh,ech->nec", h, self.head.weight) + self.head.bias
        return (gates[:, None] * outputs).square().sum(-1)

    def get_extra_state(self) -> dict:
        return {"family": self.family}

    def set_extra_state(self, state: dict) -> None:
        self.family = state.get("family")

    def balancing_loss(self) -> Tensor:
        """NID's auxiliary loss over every scene's gates."""
        return balancing_loss(self.gates(), dense=bool(self.dense))

    def macs_per_sample(self) -> int:
        linears = [m for m in [*self.mlp, *(self.residual or [])] if isinstance(m, nn.Linear)]
        return sum(m.in_features * m.out_features for m in linears) + self.head.macs_per_sample()
