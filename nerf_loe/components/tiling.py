"""Tilings: which weight bank each position uses at each layer (dimension-generic).

Positions are in the unit box ``[0, 1)^d``. Layer ``l`` has per-axis bank counts ``B_l``
(flattened row-major into ``prod(B_l)`` banks). Three layouts:

- ``hierarchical`` (LoE default, "progressively growing"): ``C_l = B_0 * ... * B_l`` per axis and
  ``idx_l = floor(x * C_l) mod B_l``; the mixed-radix digits of the finest cell index, so every
  finest cell sees a unique combination of banks across layers.
- ``interleaved`` (the single-scale ablation): every layer tiles at the finest scale ``C_L``:
  ``idx_l = floor(x * C_L) mod B_l``.
- ``partition`` (Partition / KiloNeRF-style): non-repeating regions, ``idx_l = floor(x * B_l)``;
  with the same ``B`` at every layer each region owns a full network.

Blending is ``nearest`` (one bank) or ``linear`` (tent weights over the ``2^d`` neighbouring
banks, centred on cell centres; wraps for repeating tilings and clamps for partitions).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerf_loe.components.constants import device_constant
from nerf_loe.errors import ConfigError

TilingLayout = Literal["hierarchical", "interleaved", "partition"]
Blending = Literal["nearest", "linear"]

#: Positions are clamped to ``[0, 1 - EPS]`` before any floor (the last cell owns x = 1).
EPS = 1e-6


@dataclass
class BankSelection:
    """Banks and mixing weights of one layer: ``K`` candidates per sample (K = 1 or 2^d)."""

    index: Int[Tensor, "k n"]
    weight: Float[Tensor, "k n"] | None
    """None for nearest blending (a single bank with weight 1)."""


def flatten_index(axis_index: Int[Tensor, "n d"], counts: tuple[int, ...]) -> Int[Tensor, " n"]:
    """Row-major flat index of per-axis indices into a grid of ``counts`` cells per axis."""
    flat = torch.zeros_like(axis_index[:, 0])
    for axis, n in enumerate(counts):
        flat = flat * n + axis_index[:, axis]
    return flat


def parse_counts(spec: tuple[str, ...], option: str, dims: int = 3) -> list[tuple[int, ...]]:
    """Per-axis counts written ``AxBxC`` (``dims`` of them) per entry, e.g. ``("2x2x2", "4x4x4")`` ->
    ``[(2, 2, 2), (4, 4, 4)]``; a ConfigError naming ``option`` for anything else."""
    example = "x".join(["4"] * dims)
    try:
        counts = [tuple(int(n) for n in entry.lower().split("x")) for entry in spec]
    except ValueError:
        raise ConfigError(f"{option} {' '.join(spec)}: write each entry as {example}") from None
    if not counts or any(len(c) != dims or min(c) < 1 for c in counts):
        raise ConfigError(f"{option} {' '.join(spec)}: give one {example} ({dims} positive counts) per entry")
    return counts


class Tiling:
    """Bank selection for every layer of a tiled network.

    Args:
        bank_counts: per layer, the per-axis bank counts, e.g. ``[(2, 2, 2), (4, 4, 4), ...]``.
        layout: ``hierarchical``, ``interleaved`` or ``partition``.
        blending: ``nearest`` or ``linear``.
    """

    def __init__(
        self,
        bank_counts: list[tuple[int, ...]],
        layout: TilingLayout = "hierarchical",
        blending: Blending = "nearest",
    ) -> None:
        if not bank_counts:
            raise ConfigError("tiling needs bank counts for at least one layer")
        dims = {len(c) for c in bank_counts}
        if len(dims) != 1:
            raise ConfigError(f"bank counts {bank_counts} mix dimensions; give every layer the same axes")
        if any(n < 1 for c in bank_counts for n in c):
            raise ConfigError(f"bank counts {bank_counts} must all be >= 1")
        if layout not in ("hierarchical", "interleaved", "partition"):
            raise ConfigError(f"tiling layout {layout!r}: choose hierarchical, interleaved or partition")
        if blending not in ("nearest", "linear"):
            raise ConfigError(f"tiling blending {blending!r}: choose nearest or linear")
        self.bank_counts = [tuple(int(n) for n in c) for c in bank_counts]
        self.layout = layout
        self.blending = blending
        self.dim = dims.pop()

        cumulative = torch.ones(self.dim, dtype=torch.float64)
        self.scales: list[Tensor] = []
        for counts in self.bank_counts:
            cumulative = cumulative * torch.tensor(counts, dtype=torch.float64)
            self.scales.append(cumulative.clone())
        if layout == "interleaved":
            self.scales = [self.scales[-1]] * len(self.scales)
        elif layout == "partition":
            self.scales = [torch.tensor(c, dtype=torch.float64) for c in self.bank_counts]
        self.scale_values = [tuple(scale.tolist()) for scale in self.scales]
        """The scales as Python numbers: keys, and the source of their device copies."""

    @property
    def num_layers(self) -> int:
        return len(self.bank_counts)

    def num_banks(self, layer: int) -> int:
        return int(torch.tensor(self.bank_counts[layer]).prod().item())

    def scaled(self, x: Float[Tensor, "n d"], layer: int) -> Float[Tensor, "n d"]:
        """Positions in units of ``layer``'s cells, ``x * C_l`` (float64; x clamped to [0, 1 - EPS]):
        the integer part is the cell, the fraction the position inside it."""
        if x.shape[-1] != self.dim:
            raise ConfigError(f"tiling is {self.dim}-D but positions have {x.shape[-1]} coordinates")
        # clamped in float64: in half precision 1 - EPS rounds to 1, whose cell is out of range
        scale = device_constant(self.scale_values[layer], x.device, torch.float64)
        return x.double().clamp(0.0, 1.0 - EPS) * scale

    def cells(self, x: Float[Tensor, "n d"], layer: int) -> Int[Tensor, "n d"]:
        """Per-axis index of ``layer``'s cell holding each position, ``floor(x * C_l)``. Hierarchical:
        the mixed-radix number whose digits are the banks of layers 0..l (``cells % B_l`` is this
        layer's, ``cells // B_l`` the previous layer's cell), which ASMR's activation sharing uses."""
        return torch.floor(self.scaled(x, layer)).long()

    def dominant_bank(self, x: Float[Tensor, "n d"], layer: int) -> Int[Tensor, " n"]:
        """The bank of ``layer`` with the largest weight at each position (the only one when
        blending is nearest): which expert a position mostly uses."""
        selection = self.select(x, layer)
        if selection.weight is None:
            return selection.index[0]
        return selection.index.gather(0, selection.weight.argmax(dim=0, keepdim=True))[0]

    def cell_index(self, x: Float[Tensor, "n d"], layer: int) -> Int[Tensor, " n"]:
        """Flat (row-major) index of ``layer``'s cell holding each position."""
        counts = tuple(int(c) for c in self.scale_values[layer])
        return flatten_index(self.cells(x, layer), counts)

    def select(self, x: Float[Tensor, "n d"], layer: int) -> BankSelection:
        """Banks (and blend weights) of ``layer`` for unit-box positions ``x``."""
        counts = self.bank_counts[layer]
        n_axis = device_constant(counts, x.device)
        q = self.scaled(x, layer)
        if self.blending == "nearest":
            cell = torch.floor(q).long()
            axis_index = cell if self.layout == "partition" else cell % n_axis
            return BankSelection(flatten_index(axis_index, counts)[None], None)

        # Linear: tents centred on cell centres; neighbours floor(q - 1/2) and floor(q - 1/2) + 1.
        shifted = q - 0.5
        base = torch.floor(shifted).long()
        frac = (shifted - base).to(x.dtype)
        indices, weights = [], []
        for corner in itertools.product((0, 1), repeat=self.dim):
            offset = device_constant(corner, x.device)
            neighbour = base + offset
            if self.layout == "partition":
                neighbour = neighbour.clamp(min=torch.zeros_like(n_axis), max=n_axis - 1)
            else:
                neighbour = neighbour % n_axis
            w = torch.where(offset.bool(), frac, 1.0 - frac).prod(dim=-1)
            indices.append(flatten_index(neighbour, counts))
            weights.append(w)
        return BankSelection(torch.stack(indices), torch.stack(weights))
