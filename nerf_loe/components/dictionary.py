"""The Neural Implicit Dictionary's last layer: E experts' linear maps from a shared trunk feature,
mixed per scene by its (sparse, signed) gates, plus a per-scene bias.

Expert ``j`` maps the trunk feature ``h`` to ``W_j h + b_j`` (``C`` channels); scene ``s`` outputs

    f_s(h) = sum_j g_sj (W_j h + b_j) + beta_s = W_s h + b_s,   W_s = sum_j g_sj W_j,

so the mixture collapses into one matrix per scene: a sample costs one ``C x H`` product whatever
E and k are; only the collapse, once per scene in the batch, touches the experts.

Example:
    >>> head = DictionaryHead(in_dim=4, num_experts=3, out_dim=2)
    >>> gates = torch.tensor([[1.0, 0.0, -0.5]])  # one scene
    >>> h = torch.randn(5, 4)
    >>> out = head(h, torch.zeros(5, dtype=torch.long), gates, torch.zeros(1, 2))
    >>> explicit = sum(g * (h @ head.weight[j].T + head.bias[j]) for j, g in enumerate(gates[0]))
    >>> bool(torch.allclose(out, explicit, atol=1e-6))
    True
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


class DictionaryHead(nn.Module):
    """E experts' linear layers (``weight`` [E, C, H], ``bias`` [E, C]), mixed per scene."""

    def __init__(self, in_dim: int, num_experts: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.num_experts, self.out_dim = in_dim, num_experts, out_dim
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default, per expert
        self.weight = nn.Parameter(torch.empty(num_experts, out_dim, in_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_experts, out_dim).uniform_(-bound, bound))

    def get_out_dim(self) -> int:
        return self.out_dim

    def collapse(
        self, gates: Float[Tensor, "s e"], scene_bias: Float[Tensor, "s c"]
    ) -> tuple[Float[Tensor, "s c h"], Float[Tensor, "s c"]]:
        """Each scene's mixed matrix and bias (only the experts a scene keeps contribute)."""
        weight = torch.einsum("se,ech->sch", gates, self.weight)
        return weight, gates @ self.bias + scene_bias

    def forward(
        self,
        h: Float[Tensor, "n h"],
        scene: Int[Tensor, " n"],
        gates: Float[Tensor, "s e"],
        scene_bias: Float[Tensor, "s c"],
    ) -> Float[Tensor, "n c"]:
        """Outputs for samples ``h`` of scenes ``scene`` (rows of ``gates`` / ``scene_bias``)."""
        present = torch.unique(scene)
        weight, bias = self.collapse(gates[present], scene_bias[present])
        if len(present) == 1:  # the common case: one scene per batch
            return h @ weight[0].T + bias[0]
        out = h.new_empty(len(h), self.out_dim)
        for i, s in enumerate(present.tolist()):  # a few scenes a batch: one product each
            rows = scene == s
            out[rows] = h[rows] @ weight[i].T + bias[i]
        return out

    def macs_per_sample(self) -> int:
        return self.in_dim * self.out_dim
