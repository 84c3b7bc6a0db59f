"""Routing: apply one of many weight banks to each sample without per-sample weight tensors.

The primitive behind Levels-of-Experts layers and the Partition baseline. Samples are sorted by
bank (one ``argsort`` per index tensor, shared by every layer that uses the index), then each bank's
matrix is applied to its rows in one of two layouts, with identical results:

- ``slices`` (the CPU's): the sorted rows, each bank's a contiguous slice. No padding and no weight
  copies: one grouped matmul (``torch._grouped_mm`` with the slices' end offsets) applies each
  bank's matrix to its slice, and backwards gives every bank's weight gradient at once (zero for
  unused banks). Operands that kernel does not take (float64, rows not a whole number of 16-byte
  units: the first layer's 51-wide encoding) run one matmul per used bank, written straight
  into the output, in a Python loop (a few microseconds a bank; every bank's views taken in one
  ``split``/``unbind`` call). CPU, 64 banks of 128 x 128: the grouped kernel takes 0.89 / 1.73 /
  5.84 ms against the loop's 1.03 / 1.94 / 6.42 for 1k / 4k / 16k rows (forward), and 1.95
  against 2.40 ms for 4k rows' weight gradient; loe-nerf's trunk forward + backward in 0.92x /
  0.94x / 0.97x the loop's time at 1k / 4k / 16k samples (interleaved rounds, median of 7).
- ``chunks`` (CUDA's): each bank's rows fill ``ceil(count / chunk)`` chunks of ``chunk`` rows (the
  last one zero-padded), so a single batched matmul applies each chunk's bank matrix to it and the
  kernel count per layer is constant, whatever the number of banks: a loop of one matmul per bank
  was launch-bound on a GPU (on an H100, ~900 small matmuls per loe-nerf step took ~100 ms of CPU
  time for 16 ms of GPU work). Padding costs at most ``chunk - 1`` rows per used bank and each chunk
  is a copy of its bank's matrix, so the chunk size is chosen per layout from the bank counts
  (:data:`CHUNK_COST_ROWS`).

On the CPU the weight copies dominated the chunked layout's memory traffic at training sizes (~400
chunks of a 128 x 128 matrix for 20k samples, against 10 MB of activations), which is why slices
serve there (``benchmarks/results/routing_cpu.md``). Memory is O(samples x width) either way.

The backward pass is written out (:class:`_RoutedMatmul`): both layouts are one-to-one maps of
rows, so activations and their gradients move by ``index_copy``/``index_select`` (no scatter-add;
only the chunked layout's weight gradient sums its chunks per bank).

A stack of routed layers need not return to sample order between layers: a layer takes its input
in the previous layer's layout and leaves its output in its own (bias and activation act row by
row, so they do not care), and :func:`rearrange` moves rows from one layout to the next in a single
gather (slices), or none when both layers share one ``Routes`` (Partition). Forward and backward
then make one gather per layer instead of two.

Under ``torch.compile`` routing stays eager (``Routes`` and :meth:`Routes.apply` are excluded):
the rest of a trunk compiles around it. On 2 CPU threads that gained nothing
(``benchmarks/results/routing_cpu_compile.md``).
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from nerf_loe.components.constants import device_constant

Layout = Literal["auto", "slices", "chunks"]

LAYOUT: Layout = "auto"
"""The layout every ``Routes`` takes unless told (benchmarks set it): auto is chunks for CUDA
tensors and slices otherwise."""

CHUNK_CHOICES = (32, 64, 128, 256)
"""Chunk sizes a chunked layout picks from (powers of two: matmul-friendly)."""

CHUNK_COST_ROWS = 32
"""The cost of one chunk's weight copy, in padded rows: a chunked layout takes the chunk size with
the fewest ``padded rows + CHUNK_COST_ROWS x chunks``. Small passes (the early-stopping pre-pass
windows, a few thousand samples over 64 banks) then take small chunks, whose padding is small,
large ones 128-256 rows, whose weight copies are few."""

GROUPED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Dtypes of the grouped matmul kernel (the sliced layout loops over banks for others)."""


def _grouped(*operands: Tensor) -> bool:
    """Whether the grouped matmul kernel takes these operands: CPU tensors (CUDA's kernel wants
    bfloat16 on recent GPUs; CUDA routes by chunks anyway), its dtypes, and strides of whole
    16-byte units (a 51-wide encoded input, 204 bytes a row, goes to the bank loop)."""
    return all(
        t.device.type == "cpu"
        and t.dtype in GROUPED_DTYPES
        and all(st * t.element_size() % 16 == 0 for st in t.stride() if st != 1)
        for t in operands
    )


CHUNK_ROWS: int | None = None
"""A fixed chunk size for every chunked layout (benchmarks set it); None chooses per layout."""


class Routes:
    """Samples laid out by bank (see the module docstring), computed once per index tensor.

    One ``Routes`` can be reused by every layer that shares the index (the Partition baseline
    routes all layers by the same region id).

    Args:
        bank_index: each sample's bank.
        num_banks: how many banks there are.
        chunk: a fixed chunk size (implies the chunked layout); None: chosen per layout.
        layout: ``slices``, ``chunks`` or ``auto`` (by device); None: :data:`LAYOUT`.
    """

    @torch.compiler.disable  # host syncs (bank sizes) would break the graph anyway
    def __init__(
        self,
        bank_index: Int[Tensor, " n"],
        num_banks: int,
        chunk: int | None = None,
        layout: Layout | None = None,
    ) -> None:
        chunk = CHUNK_ROWS if chunk is None else chunk  # read at call time: benchmarks vary them
        layout = LAYOUT if layout is None else layout
        if layout == "auto":
            layout = "chunks" if bank_index.is_cuda or chunk is not None else "slices"
        self.layout = layout
        self.num_samples = int(bank_index.shape[0])
        counts = torch.bincount(bank_index, minlength=num_banks)
        if layout == "slices":
            self._slices(bank_index, counts)
        else:
            self._chunks(bank_index, counts, chunk)

    def _slices(self, bank_index: Int[Tensor, " n"], counts: Int[Tensor, " banks"]) -> None:
        host = counts.tolist()  # the one host sync: where each bank's slice starts and ends
        used = [b for b, c in enumerate(host) if c]
        self.single_bank: int | None = used[0] if len(used) == 1 else (0 if not used else None)
        """The only bank used (also when no samples): then a plain matmul serves."""
        if self.single_bank is not None:
            return
        self.used = used
        """The banks with samples, in the sorted layout's order."""
        self.sizes = [host[b] for b in used]
        """Each used bank's number of rows in the sorted layout (they sum to the samples)."""
        self.offsets = counts.cumsum(0).to(torch.int32)
        """Where each bank's slice ends in the sorted layout (the grouped matmul's offsets)."""
        self.order = torch.argsort(bank_index, stable=True)
        """The samples in sorted order: the sorted layout's rows."""
        self.slot = torch.empty_like(self.order)
        self.slot[self.order] = torch.arange(self.num_samples, device=bank_index.device)
        """Each sample's row in the sorted layout."""

    def _chunks(
        self, bank_index: Int[Tensor, " n"], counts: Int[Tensor, " banks"], chunk: int | None
    ) -> None:
        num_banks = counts.shape[0]
        choices = device_constant(CHUNK_CHOICES if chunk is None else (chunk,), counts.device)
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
        self.single_bank = first_bank if used <= 1 else None
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

    @torch.compiler.disable  # torch 2.14's grouped-matmul meta kernel refuses CPU float32
    def apply(
        self,
        x: Float[Tensor, "... d_in"],
        weight: Float[Tensor, "banks d_out d_in"],
        source: Routes | None = None,
        target: Routes | None = None,
    ) -> Float[Tensor, "... d_out"]:
        """``out[i] = weight[bank_index[i]] @ x[i]`` for every sample, without a bias; ``x`` in the
        layout of ``source`` and ``out`` in that of ``target`` (None: sample order, ``[n, d]``)."""
        if self.single_bank is not None:
            rows = rearrange(x, source, None) @ weight[self.single_bank].T
            return rearrange(rows, None, target)
        return _RoutedMatmul.apply(x, weight, self, source, target)

    def pad(self, rows: Float[Tensor, "n d"]) -> Tensor:
        """Rows in sample order into the layout: sorted ``[n, d]`` (slices), or ``[chunks, chunk,
        d]`` with zeros in the padding (chunks)."""
        if self.layout == "slices":
            return rows.index_select(0, self.order)
        padded = rows.new_zeros(self.num_chunks * self.chunk, rows.shape[1])
        return padded.index_copy_(0, self.slot, rows).view(self.num_chunks, self.chunk, -1)

    def unpad(self, laid_out: Tensor) -> Float[Tensor, "n d"]:
        """Rows of the layout back in sample order."""
        return laid_out.reshape(-1, laid_out.shape[-1]).index_select(0, self.slot)

    def matmul(self, rows: Tensor, weight: Float[Tensor, "banks d_out d_in"], transpose: bool) -> Tensor:
        """Each bank's matrix (transposed, ``W^T``, when ``transpose``) applied to its rows of the
        layout: ``rows @ W^T`` per bank for the forward pass, ``rows @ W`` for the input gradient."""
        if self.layout == "chunks":
            banks = weight.index_select(0, self.chunk_bank)
            return torch.bmm(rows, banks.transpose(1, 2) if transpose else banks)
        weight = weight.transpose(1, 2) if transpose else weight
        if _grouped(rows, weight):
            return torch._grouped_mm(rows, weight, offs=self.offsets)
        out = rows.new_empty(rows.shape[0], weight.shape[2])
        # every view taken in one call (split, unbind): per-bank indexing cost more than small mms
        banks = weight.unbind(0)
        for bank, x, y in zip(self.used, rows.split(self.sizes), out.split(self.sizes), strict=True):
            torch.mm(x, banks[bank], out=y)
        return out

    def weight_grad(self, grad_rows: Tensor, x_rows: Tensor, weight: Tensor) -> Tensor:
        """Each bank's weight gradient, ``sum over its rows of grad x^T``, from the laid-out rows."""
        if self.layout == "slices" and _grouped(grad_rows.T, x_rows):
            return torch._grouped_mm(grad_rows.T, x_rows, offs=self.offsets)
        grad_weight = torch.zeros_like(weight)
        if self.layout == "chunks":
            per_chunk = torch.bmm(grad_rows.transpose(1, 2), x_rows)
            return grad_weight.index_add_(0, self.chunk_bank, per_chunk)
        grads = grad_weight.unbind(0)
        pairs = zip(self.used, grad_rows.T.split(self.sizes, 1), x_rows.split(self.sizes), strict=True)
        for bank, g_t, x in pairs:
            torch.mm(g_t, x, out=grads[bank])
        return grad_weight


def rearrange(rows: Tensor, source: Routes | None, target: Routes | None) -> Tensor:
    """``rows`` laid out by ``source`` moved into the layout of ``target`` (None, or routes with a
    single bank: sample order). Every such move is a one-to-one map of the samples' rows, so its
    adjoint (the gradient's way back) is the move from ``target`` to ``source``.

    Example: samples in banks ``[1, 0, 1]`` sort to rows ``[x1, x0, x2]``; from there into routes
    whose banks are ``[0, 0, 1]`` is one gather, to ``[x0, x1, x2]``.
    """
    source = None if source is None or source.single_bank is not None else source
    target = None if target is None or target.single_bank is not None else target
    if source is target:
        return rows
    if target is None:
        return source.unpad(rows)
    if source is None:
        return target.pad(rows)
    if source.layout == target.layout == "slices":  # one gather: target's row r is sample order[r]
        return rows.index_select(0, source.slot.index_select(0, target.order))
    return target.pad(source.unpad(rows))


class _RoutedMatmul(torch.autograd.Function):
    """``out[i] = W[bank[i]] @ x[i]`` computed in the routes' layout, ``x`` arriving in the layout
    of ``source`` and ``out`` leaving in that of ``target`` (see the module docstring)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor,
        routes: Routes,
        source: Routes | None,
        target: Routes | None,
    ) -> Tensor:
        x_rows = rearrange(x, source, routes)
        out = routes.matmul(x_rows, weight, transpose=True)
        ctx.save_for_backward(x_rows, weight)
        ctx.routes, ctx.source, ctx.target = routes, source, target
        return rearrange(out, routes, target)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        x_rows, weight = ctx.saved_tensors
        routes: Routes = ctx.routes
        grad_rows = rearrange(grad_out.contiguous(), ctx.target, routes)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = rearrange(routes.matmul(grad_rows, weight, transpose=False), routes, ctx.source)
        if ctx.needs_input_grad[1]:
            grad_weight = routes.weight_grad(grad_rows, x_rows, weight)
        return grad_x, grad_weight, None, None, None


def routed_linear(
    x: Float[Tensor, "n d_in"],
    weight: Float[Tensor, "banks d_out d_in"],
    bank_index: Int[Tensor, " n"],
) -> Float[Tensor, "n d_out"]:
    """One-shot form of :meth:`Routes.apply`."""
    return Routes(bank_index, weight.shape[0]).apply(x, weight)
