"""Routing: apply one of many weight banks to each sample without per-sample weight tensors.

The primitive behind Levels-of-Experts layers and the Partition baseline. Samples are laid out by
bank in fixed-size chunks: each bank's rows fill ``ceil(count / chunk)`` chunks of ``chunk`` rows
(the last one zero-padded), so every chunk belongs to one bank, and a single batched matmul
applies each chunk's bank matrix to it. The kernel count per layer is then constant, whatever the
number of banks: a loop of one matmul per bank was launch-bound on a GPU (on an H100, ~900 small
matmuls per loe-nerf step took ~100 ms of CPU time for 16 ms of GPU work), and on the CPU the
batched form costs the same as that loop. Padding costs at most ``chunk - 1`` rows per used bank,
each chunk a copy of its bank's matrix, so the chunk size is chosen per layout from the bank
counts (:data:`CHUNK_COST_ROWS`): a fixed 256 cost 4.8x the MLP's forward + backward on 3,000
samples, where the choice costs 2.2x (``benchmarks/results/routing_cpu.md``). Memory is
O(samples x width) plus one ``[out, in]`` matrix per chunk.

The backward pass is written out (:class:`_RoutedMatmul`): the padded layout is a one-to-one map
of rows, so gradients move by ``index_copy``/``index_select`` (no scatter-add), and each chunk's
weight gradient is summed into its bank with one ``index_add``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

CHUNK_CHOICES = (32, 64, 128, 256)
"""Chunk sizes a layout picks from (powers of two: matmul-friendly)."""

CHUNK_COST_ROWS = 32
"""The cost of one chunk's weight copy, in padded rows: a layout takes the chunk size with the
fewest ``padded rows + CHUNK_COST_ROWS x chunks``. Small passes (the early-stopping pre-pass
windows, a few thousand samples over 64 banks) then take small chunks, whose padding is small,
large ones 128-256 rows, whose weight copies are few."""

CHUNK_ROWS: int | None = None
"""A fixed chunk size for every layout (benchmarks set it); None chooses per layout."""


class Routes:
    """Samples laid out by bank in chunks, computed once per index tensor.

    One ``Routes`` can be reused by every layer that shares the index (the Partition baseline
    routes all layers by the same region id).
    """

    def __init__(self, bank_index: Int[Tensor, " n"], num_banks: int, chunk: int | None = None) -> None:
        chunk = CHUNK_ROWS if chunk is None else chunk  # read at call time: benchmarks vary it
        self.num_samples = int(bank_index.shape[0])
        counts = torch.bincount(bank_index, minlength=num_banks)
        choices = torch.tensor(CHUNK_CHOICES if chunk is None else (chunk,), device=counts.device)
        chunks_per_choice = ((counts[None] + choices[:, None] - 1) // choices[:, None]).sum(1)
        cost = chunks_per_choice * (choices + CHUNK_COST_ROWS)
        best = cost.argmin()
        self.chunk, self.num_chunks, used, first_bank = (
            torch.stack(
                [choices[best], chunks_per_choice[best], (counts > 0).sum(), counts.ne(0).int().argmax()]
            ).tolist()
            if num_banks
            else (int(choices[0]), 0, 0, 0)
        )  # the one host sync: the chunk size and the padded size
        chunk = self.chunk
        chunks_per_bank = (counts + chunk - 1) // chunk
        chunk_end = chunks_per_bank.cumsum(0)
        self.single_bank: int | None = first_bank if used <= 1 else None
        """The only bank used (also when no samples): then a plain matmul serves."""
        if self.single_bank is not None:
            return
        order = torch.argsort(bank_index, stable=True)
        bank_sorted = bank_index[order]
        rank = (
            torch.arange(self.num_samples, device=bank_index.device)
            - (counts.cumsum(0) - counts)[bank_sorted]
        )
        self.slot = torch.empty_like(order)
        self.slot[order] = (chunk_end - chunks_per_bank)[bank_sorted] * chunk + rank
        """Each sample's row in the padded layout (distinct rows: a one-to-one map)."""
        chunk_ids = torch.arange(self.num_chunks, device=bank_index.device)
        self.chunk_bank = torch.searchsorted(chunk_end, chunk_ids, right=True)
        """The bank of every chunk."""

    def apply(
        self, x: Float[Tensor, "n d_in"], weight: Float[Tensor, "banks d_out d_in"]
    ) -> Float[Tensor, "n d_out"]:
        """``out[i] = weight[bank_index[i]] @ x[i]`` for every sample, without a bias."""
        if self.single_bank is not None:
            return x @ weight[self.single_bank].T
        return _RoutedMatmul.apply(x, weight, self)

    def pad(self, rows: Float[Tensor, "n d"]) -> Float[Tensor, "chunks chunk d"]:
        """Rows in sample order into the padded chunk layout (zeros in the padding)."""
        padded = rows.new_zeros(self.num_chunks * self.chunk, rows.shape[1])
        return padded.index_copy_(0, self.slot, rows).view(self.num_chunks, self.chunk, -1)

    def unpad(self, chunks: Float[Tensor, "chunks chunk d"]) -> Float[Tensor, "n d"]:
        """Rows of the padded layout back in sample order."""
        return chunks.reshape(-1, chunks.shape[-1]).index_select(0, self.slot)


class _RoutedMatmul(torch.autograd.Function):
    """``out[i] = W[bank[i]] @ x[i]`` by one batched matmul over chunks (see the module docstring)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, routes: Routes) -> Tensor:
        x_chunks = routes.pad(x)
        out = torch.bmm(x_chunks, weight.index_select(0, routes.chunk_bank).transpose(1, 2))
        ctx.save_for_backward(x_chunks, weight)
        ctx.routes = routes
        return routes.unpad(out)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x_chunks, weight = ctx.saved_tensors
        routes: Routes = ctx.routes
        grad_chunks = routes.pad(grad_out.contiguous())
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = routes.unpad(torch.bmm(grad_chunks, weight.index_select(0, routes.chunk_bank)))
        if ctx.needs_input_grad[1]:
            per_chunk = torch.bmm(grad_chunks.transpose(1, 2), x_chunks)
            grad_weight = torch.zeros_like(weight).index_add_(0, routes.chunk_bank, per_chunk)
        return grad_x, grad_weight, None


def routed_linear(
    x: Float[Tensor, "n d_in"],
    weight: Float[Tensor, "banks d_out d_in"],
    bank_index: Int[Tensor, " n"],
) -> Float[Tensor, "n d_out"]:
    """One-shot form of :meth:`Routes.apply`."""
    return Routes(bank_index, weight.shape[0]).apply(x, weight)
