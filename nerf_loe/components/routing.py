"""Routing: apply one of many weight banks to each sample without per-sample weight tensors.

The primitive behind Levels-of-Experts layers and the Partition baseline. Samples are grouped by
bank id (one stable sort), each non-empty bank runs a single dense matmul on its contiguous slice,
and the results are scattered back to the original order. Memory is O(samples x width) whatever
the number of banks; autograd flows through the gather, matmul and scatter.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


class Routes:
    """Samples grouped by bank: the sort and the per-bank slices, computed once per index tensor.

    One ``Routes`` can be reused by every layer that shares the index (the Partition baseline
    routes all layers by the same region id).
    """

    def __init__(self, bank_index: Int[Tensor, " n"], num_banks: int) -> None:
        self.num_samples = int(bank_index.shape[0])
        self.order = torch.argsort(bank_index, stable=True)
        counts = torch.bincount(bank_index, minlength=num_banks)
        self.banks = torch.nonzero(counts).squeeze(-1).tolist()
        self.sizes = counts[self.banks].tolist()

    def apply(
        self, x: Float[Tensor, "n d_in"], weight: Float[Tensor, "banks d_out d_in"]
    ) -> Float[Tensor, "n d_out"]:
        """``out[i] = weight[bank_index[i]] @ x[i]`` for every sample, without a bias."""
        if len(self.banks) <= 1:  # one bank used (or no samples): a plain matmul, no gather/scatter
            return x @ weight[self.banks[0] if self.banks else 0].T
        grouped = x.index_select(0, self.order).split(self.sizes)
        out = torch.cat([chunk @ weight[b].T for chunk, b in zip(grouped, self.banks, strict=True)])
        return torch.empty_like(out).index_copy(0, self.order, out)


def routed_linear(
    x: Float[Tensor, "n d_in"],
    weight: Float[Tensor, "banks d_out d_in"],
    bank_index: Int[Tensor, " n"],
) -> Float[Tensor, "n d_out"]:
    """One-shot form of :meth:`Routes.apply`."""
    return Routes(bank_index, weight.shape[0]).apply(x, weight)
