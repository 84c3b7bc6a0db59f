"""Routing: apply one of many weight banks to each sample without per-sample weight tensors.

The primitive behind Levels-of-Experts layers and the Partition baseline. Samples are grouped by
bank id (one stable sort), each non-empty bank runs a single dense matmul on its contiguous slice,
written in place into one output buffer, and the results are gathered back to the original order
by the inverse permutation. Memory is O(samples x width) whatever the number of banks.

The backward pass is written out (:class:`_RoutedMatmul`) rather than left to autograd: autograd
would differentiate ``weight[b]`` by materialising a zero tensor of the whole bank stack per bank
(O(banks^2) memory traffic) and would ``cat``/``split`` the per-bank slices. Here each bank's
weight gradient is one ``mm`` into its own slot, and input gradients land in one buffer.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable


class Routes:
    """Samples grouped by bank: the sort and the per-bank slices, computed once per index tensor.

    One ``Routes`` can be reused by every layer that shares the index (the Partition baseline
    routes all layers by the same region id).
    """

    def __init__(self, bank_index: Int[Tensor, " n"], num_banks: int) -> None:
        self.num_samples = int(bank_index.shape[0])
        self.order = torch.argsort(bank_index, stable=True)
        self.inverse = torch.empty_like(self.order)
        self.inverse[self.order] = torch.arange(self.num_samples, device=bank_index.device)
        """Where each sample sits in ``order``: rows return to sample order by a gather, which
        ``index_select`` runs on all threads (``index_copy_``, the scatter, on one)."""
        counts = torch.bincount(bank_index, minlength=num_banks)
        self.banks = torch.nonzero(counts).squeeze(-1).tolist()
        sizes = counts[self.banks].tolist()
        ends = torch.tensor(sizes).cumsum(0).tolist() if sizes else []
        self.slices = [(end - size, end) for size, end in zip(sizes, ends, strict=True)]
        """Per used bank, its [start, end) range in ``order``."""

    def apply(
        self, x: Float[Tensor, "n d_in"], weight: Float[Tensor, "banks d_out d_in"]
    ) -> Float[Tensor, "n d_out"]:
        """``out[i] = weight[bank_index[i]] @ x[i]`` for every sample, without a bias."""
        if len(self.banks) <= 1:  # one bank used (or no samples): a plain matmul, no gather/scatter
            return x @ weight[self.banks[0] if self.banks else 0].T
        return _RoutedMatmul.apply(x, weight, self)


class _RoutedMatmul(torch.autograd.Function):
    """``out[i] = W[bank[i]] @ x[i]`` with a hand-written backward (see the module docstring)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, routes: Routes) -> Tensor:
        x_sorted = x.index_select(0, routes.order)
        out_sorted = x.new_empty(x.shape[0], weight.shape[1])
        for bank, (start, end) in zip(routes.banks, routes.slices, strict=True):
            torch.mm(x_sorted[start:end], weight[bank].T, out=out_sorted[start:end])
        ctx.save_for_backward(x_sorted, weight)
        ctx.routes = routes
        return _unsort(out_sorted, routes)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x_sorted, weight = ctx.saved_tensors
        routes: Routes = ctx.routes
        grad_sorted = grad_out.contiguous().index_select(0, routes.order)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x_sorted = grad_out.new_empty(x_sorted.shape)
            for bank, (start, end) in zip(routes.banks, routes.slices, strict=True):
                torch.mm(grad_sorted[start:end], weight[bank], out=grad_x_sorted[start:end])
            grad_x = _unsort(grad_x_sorted, routes)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight)
            for bank, (start, end) in zip(routes.banks, routes.slices, strict=True):
                torch.mm(grad_sorted[start:end].T, x_sorted[start:end], out=grad_weight[bank])
        return grad_x, grad_weight, None


def _unsort(rows: Tensor, routes: Routes) -> Tensor:
    """Rows in bank order back to sample order."""
    return rows.index_select(0, routes.inverse)


def routed_linear(
    x: Float[Tensor, "n d_in"],
    weight: Float[Tensor, "banks d_out d_in"],
    bank_index: Int[Tensor, " n"],
) -> Float[Tensor, "n d_out"]:
    """One-shot form of :meth:`Routes.apply`."""
    return Routes(bank_index, weight.shape[0]).apply(x, weight)
