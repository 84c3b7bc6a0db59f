"""ASMR: activation-sharing multi-resolution coordinate network (Li et al., ICLR 2024), any dimension.

A position ``x`` in the unit box is written as mixed-radix digits, one per level: with per-axis
bases ``B_l`` and ``C_l = B_0 ... B_l``, ``d_l = floor(x C_l) mod B_l`` (the hierarchical
:class:`~nerf_loe.components.tiling.Tiling`'s bank indices), normalised to [0, 1] by ``B_l - 1``
(0 where ``B_l = 1``). A SIREN backbone reads one level per layer::

    h_0 = d_0,   h_{k+1} = sin(w0 (W_k h_k + b_k + M_k(d_{k+1}))),   out = W_o h_K + b_o

with a modulator ``M_k`` per level: ``linear`` (``w0 V u``, no bias, PyTorch's default init) or
``nonlinear`` (a 3-layer, 32-wide SIREN). On a raster whose size is the product of the bases
(the paper's setting) every pixel is one finest cell. For continuous positions (NeRF samples)
``remainder=True`` appends one more input, the position inside the finest cell
``r = frac(x C_{L-1})`` in [0, 1)^d, so the output varies inside cells; its linear modulator is
``V r`` with the SIREN first-layer init (see :class:`LinearModulator`).

``digits="place"`` (our NeRF variant) feeds each digit by its place value ``d_l / C_l`` and the
remainder as ``r / C_{L-1}``, so the inputs sum to ``x``, and gives every linear modulator the
SIREN first-layer init: neighbouring cells then start with nearby activations (a smooth field, as
a SIREN of ``x``) instead of unrelated ones, which novel views need; sharing is unchanged.

``backbone="relu"`` (our NeRF variant) keeps the sharing structure with a ReLU backbone that
trains like the positional-encoding MLP: layer ``k`` reads the positional encoding of its level's
cell centre ``c_k = (floor(x C_k) + 1/2) / C_k`` at frequencies up to that level's resolution
(``pi 2^j``, ``2^j < max C_k``, and ``c_k`` itself), the remainder layer the encoding of ``x`` at
the ``remainder_frequencies`` highest bands up to ``pi 2^t``, ``2^t >= max C_{L-1}`` (half a period
across a finest cell; 8 bands for 128 cells: the PE-MLP's ``pi .. 128 pi``)::

    h_0 = g_0(c_0),   h_{k+1} = relu(W_k h_k + b_k + V_k g_{k+1}(c_{k+1})),   out = W_o h_K + b_o

``c_{k+1}`` holds digits 0..k+1, but the encoding acts on each coordinate alone, so ``V_k g(c)`` is
a sum over axes of rows computed once per cell-centre coordinate (``C_k`` rows an axis, not one a
cell; see :meth:`ASMR._axis_modulation`); everything else is shared as below.

Activation sharing: ``W_k h_k + b_k`` depends only on digits 0..k, that is on the level-k cell
``floor(x C_k)``, and ``M_k`` only on one digit. The shared path evaluates layer ``k`` once per
distinct level-k cell among the inputs, the modulators once per digit value (relu: per cell-centre
coordinate), and only what follows the finest level per sample: the direct path's arithmetic,
deduplicated (the relu modulation summed in another order: equal to float rounding). That
per-sample remainder layer may be narrower than the others (``fine_dim``): with the output layer
it is the cost sharing cannot remove. Under
``torch.no_grad`` it also keeps each level's cell pre-activations between calls: in evaluation
mode complete tables for levels with at most ``dense_cells`` cells, else (finer levels, and every
level in training mode, whose parameters change every step) a cache of the touched cells (at most
``lazy_cells`` rows a level). They are dropped when a parameter changes in place (an
optimizer step: the parameters' version counters), on checkpoint loads and device or dtype
moves; a change autograd does not see (a write through ``.data``, a fused
optimizer) must call :meth:`ASMR.invalidate_tables`.

Example:
    >>> net = ASMR([(2, 2), (4, 4), (4, 4)], hidden_dim=16, out_dim=3, remainder=False)
    >>> pixels = (torch.stack(torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij"), -1)
    ...           .reshape(-1, 2) + 0.5) / 32  # pixel centres of a 32 x 32 raster
    >>> with torch.no_grad():
    ...     shared, direct = net(pixels), net.forward_direct(pixels)
    >>> bool((shared - direct).abs().max() < 1e-5), shared.shape
    (True, torch.Size([1024, 3]))
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float, Int
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor, nn

from nerf_loe.components.constants import device_constant
from nerf_loe.components.frequency_mask import FrequencyMask
from nerf_loe.components.siren import Siren, siren_init_
from nerf_loe.components.tiled_mlp import Init
from nerf_loe.components.tiling import Tiling, flatten_index
from nerf_loe.errors import ConfigError

Modulator = Literal["linear", "nonlinear"]
Backbone = Literal["siren", "relu"]
Digits = Literal["digit", "place"]
Sharing = Literal["never", "inference", "always"]


class LinearModulator(nn.Module):
    """``scale * V u``: one bias-free linear map. For normalised digits ``scale = w0`` with
    PyTorch's default initialisation (the paper's code); for the continuous remainder, and for
    every input with ``digits="place"``, ``scale = 1`` with the SIREN first-layer initialisation, so
    the field varies at a SIREN's first-layer frequencies (``w0 / d``) rather than at the ``w0^2``
    scale that gives each digit an unrelated phase."""

    def __init__(self, in_dim: int, out_dim: int, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.scale = scale

    def forward(self, u: Float[Tensor, "n d"]) -> Float[Tensor, "n h"]:
        out = self.linear(u)
        return out if self.scale == 1.0 else self.scale * out  # no pass over n x h to multiply by 1

    def macs_per_sample(self) -> int:
        return self.linear.in_features * self.linear.out_features


def _unflatten(keys: Int[Tensor, " n"], counts: tuple[int, ...]) -> Int[Tensor, "n d"]:
    """Inverse of :func:`flatten_index`: per-axis indices of row-major flat ``keys``."""
    axes = []
    for n in reversed(counts):
        axes.append(keys % n)
        keys = keys // n
    return torch.stack(axes[::-1], dim=-1)


class _CellTable:
    """Pre-activations of one level's cells: complete (row = flat cell key), or a cache of the
    touched cells whose rows sit in insertion order in a buffer that grows by doubling, found
    through sorted keys, so an insert merges integer keys and never moves rows."""

    def __init__(self, values: Tensor, cache: bool = False) -> None:
        self.values = values
        self.keys = self.rows = values.new_zeros(0, dtype=torch.long) if cache else None
        self.used = 0 if cache else len(values)

    def lookup(self, cells: Int[Tensor, " m"]) -> tuple[Tensor, Tensor]:
        """Rows for ``cells`` (arbitrary where missing) and which were found."""
        if self.keys is None:
            return self.values.index_select(0, cells), torch.ones_like(cells, dtype=torch.bool)
        if len(self.keys) == 0:
            return self.values.new_empty(len(cells), self.values.shape[1]), torch.zeros_like(
                cells, dtype=torch.bool
            )
        pos = torch.searchsorted(self.keys, cells).clamp(max=len(self.keys) - 1)
        return self.values.index_select(0, self.rows[pos]), self.keys[pos] == cells

    def insert(self, cells: Int[Tensor, " m"], values: Tensor, limit: int) -> None:
        """Add sorted cells not yet held, ``limit`` rows at most: when they do not fit, the cache
        restarts with the first ``limit`` of them. The sorted keys are merged, not re-sorted: each
        old key moves up by the new keys below it, each new key by the old keys below it."""
        assert self.keys is not None and self.rows is not None
        if self.used + len(cells) > limit:
            self.keys, self.rows, self.used = self.keys[:0], self.rows[:0], 0
            cells, values = cells[:limit], values[:limit]
        end = self.used + len(cells)
        if end > len(self.values):
            grown = self.values.new_empty(min(limit, max(end, 2 * len(self.values))), values.shape[1])
            grown[: self.used] = self.values[: self.used]
            self.values = grown
        self.values[self.used : end] = values
        old_at = torch.arange(len(self.keys), device=cells.device) + torch.searchsorted(cells, self.keys)
        new_at = torch.arange(len(cells), device=cells.device) + torch.searchsorted(self.keys, cells)
        keys, rows = cells.new_empty(end), cells.new_empty(end)
        keys[old_at], rows[old_at] = self.keys, self.rows
        keys[new_at], rows[new_at] = cells, torch.arange(self.used, end, device=cells.device)
        self.keys, self.rows, self.used = keys, rows, end


def _invalidate_after_load(module: ASMR, _keys) -> None:
    module.invalidate_tables()


class ASMR(nn.Module):
    """The ASMR network (see the module docstring).

    Args:
        bases: per level, the per-axis bases ``B_l``, e.g. ``[(2, 2, 2), (4, 4, 4), (4, 4, 4)]``.
        hidden_dim: backbone width.
        out_dim: output channels.
        w0: SIREN frequency (30 in the paper).
        modulator: ``linear`` or ``nonlinear``.
        remainder: append the position inside the finest cell as a last level (continuous inputs).
        sharing: ``inference`` (the shared path under ``torch.no_grad``, the direct path when
            gradients are needed), ``always`` (shared in training too: exact, gradients flow through
            the deduplicated cells) or ``never``.
        dense_cells: levels with at most this many cells keep a complete table in inference.
        lazy_cells: finer levels cache up to this many touched cells each in inference (0: none).
        backbone: ``siren`` (the paper's) or ``relu`` (positional encodings of the cell centres;
            ``w0``, ``modulator`` and ``digits`` do not apply).
        remainder_frequencies: with ``relu``, how many of the highest bands the remainder layer's
            encoding of ``x`` keeps (the lower ones repeat the finest cell centre's).
        init: with ``relu``, the backbone layers' initialisation: ``kaiming`` (He's, zero biases)
            or ``torch`` (nn.Linear's default); see :class:`~nerf_loe.components.tiled_mlp.TiledMLP`.
        fine_dim: width of the last layer (``hidden_dim`` if None). With ``remainder`` it is the
            layer that runs per input after sharing, so its width sets most of what sharing cannot
            remove: its modulator and the output layer; the layers before it keep ``hidden_dim``.
        frequency_mask: with ``relu``, FreeNeRF's release of every encoding's frequencies
            (:class:`~nerf_loe.components.frequency_mask.FrequencyMask` after each level's and the
            remainder's encoding; the model sets their ``progress``). Masking acts per encoded
            column, so the axis sums and sharing stay exact; the tables follow ``progress``.
        cell_jitter: in training passes that need gradients, each position's cells are those of
            ``x + u / C_{L-1}``, ``u ~ U(-s/2, s/2)^d`` (``s`` finest cells), the remainder's input
            still that of ``x``: a stochastic box filter over neighbouring cells (with ``s = 1`` its
            mean is their linear interpolation), so training fits the cells' blend and a cell
            cannot fit the few rays through it alone. Evaluation, and passes without gradients
            (the renderer's density pre-pass, the grid's updates), look up ``x``'s own cells.
    """

    def __init__(
        self,
        bases: list[tuple[int, ...]],
        hidden_dim: int,
        out_dim: int,
        w0: float = 30.0,
        modulator: Modulator = "linear",
        remainder: bool = True,
        digits: Digits = "digit",
        sharing: Sharing = "inference",
        dense_cells: int = 1 << 15,
        lazy_cells: int = 1 << 19,
        backbone: Backbone = "siren",
        remainder_frequencies: int = 8,
        fine_dim: int | None = None,
        init: Init = "kaiming",
        frequency_mask: bool = False,
        cell_jitter: float = 0.0,
    ) -> None:
        super().__init__()
        fine_dim = hidden_dim if fine_dim is None else fine_dim
        if not cell_jitter >= 0:
            raise ConfigError(f"ASMR cell_jitter must be >= 0 (finest cells), got {cell_jitter}")
        self.cell_jitter = cell_jitter
        if min(hidden_dim, out_dim, fine_dim) < 1 or not w0 > 0:
            raise ConfigError(
                "ASMR needs hidden_dim, fine_dim, out_dim >= 1 and w0 > 0: "
                f"{hidden_dim}, {fine_dim}, {out_dim}, {w0}"
            )
        if dense_cells < 0 or lazy_cells < 0:
            raise ConfigError(f"ASMR dense_cells, lazy_cells must be >= 0 (got {dense_cells}, {lazy_cells})")
        self.tiling = Tiling(bases, "hierarchical")
        self.in_dim, self.out_dim, self.w0 = self.tiling.dim, out_dim, w0
        self._level_counts = [tuple(int(c) for c in values) for values in self.tiling.scale_values]
        self.remainder = remainder
        if digits not in ("digit", "place"):
            raise ConfigError(f"ASMR digits {digits!r}: choose digit or place")
        self.digits = digits
        if sharing not in ("never", "inference", "always"):
            raise ConfigError(f"ASMR sharing {sharing!r}: choose never, inference or always")
        if modulator not in ("linear", "nonlinear"):
            raise ConfigError(f"ASMR modulator {modulator!r}: choose linear or nonlinear")
        if backbone not in ("siren", "relu"):
            raise ConfigError(f"ASMR backbone {backbone!r}: choose siren or relu")
        self.backbone = backbone
        if frequency_mask and backbone != "relu":
            raise ConfigError("ASMR frequency_mask masks positional encodings: the relu backbone's")
        self.sharing, self.dense_cells, self.lazy_cells = sharing, dense_cells, lazy_cells
        self.num_levels = len(bases)
        depth = self.num_levels - 1 + int(remainder)  # sine layers: one per input after level 0
        if depth < 1:
            raise ConfigError("ASMR needs two levels, or one level with remainder=True")
        d = self.in_dim
        widths = [hidden_dim] * (depth - 1) + [fine_dim]  # each layer's output
        self.frequency_masks: nn.ModuleList | None = None
        if backbone == "relu":
            self._build_relu(hidden_dim, widths, out_dim, remainder_frequencies, init, frequency_mask)
            return
        self.layers = nn.ModuleList(
            nn.Linear(d if k == 0 else hidden_dim, width) for k, width in enumerate(widths)
        )
        for k, layer in enumerate(self.layers):
            siren_init_(layer, w0, first=k == 0)
        if modulator == "linear" and digits == "place":
            self.modulators = nn.ModuleList(LinearModulator(d, width, 1.0) for width in widths)
            for m in self.modulators:
                siren_init_(m.linear, w0, first=True)
        elif modulator == "linear":
            self.modulators = nn.ModuleList(LinearModulator(d, width, w0) for width in widths)
            if remainder:
                self.modulators[-1] = LinearModulator(d, fine_dim, 1.0)
                siren_init_(self.modulators[-1].linear, w0, first=True)
        else:
            self.modulators = nn.ModuleList(Siren(d, 32, width, 3, w0) for width in widths)
        self.output = nn.Linear(fine_dim, out_dim)
        siren_init_(self.output, w0, first=False)
        self._finish_init()

    def _build_relu(
        self,
        hidden_dim: int,
        widths: list[int],
        out_dim: int,
        remainder_frequencies: int,
        init: Init,
        frequency_mask: bool,
    ) -> None:
        """The ReLU backbone: an encoding per input (each level's cell centre, the remainder's
        ``x``); its layers He-initialised (``init="kaiming"``) or PyTorch's default, modulators and
        output layer PyTorch's default."""
        # (bands, lowest j) of each encoding, bands pi 2^j: levels from sin(pi x) up to their
        # resolution; the remainder the highest bands up to half a period per finest cell
        bands = [(max(1, math.ceil(math.log2(max(counts)))), 0) for counts in self._level_counts]
        if self.remainder:
            top = math.ceil(math.log2(max(self._level_counts[-1])))
            bands.append((remainder_frequencies, top - remainder_frequencies + 1))
        self.encodings = nn.ModuleList(
            NeRFEncoding(
                in_dim=self.in_dim,
                num_frequencies=count,
                min_freq_exp=lowest - 1.0,  # NeRFEncoding multiplies by 2 pi: 2 pi 2^(j-1) = pi 2^j
                max_freq_exp=lowest + count - 2.0,
                include_input=True,
                implementation="torch",
            )
            for count, lowest in bands
        )
        self.frequency_masks = (
            nn.ModuleList(FrequencyMask(self.in_dim, count) for count, _ in bands) if frequency_mask else None
        )
        encoded = [e.get_out_dim() for e in self.encodings]
        self.layers = nn.ModuleList(
            nn.Linear(encoded[0] if k == 0 else hidden_dim, width) for k, width in enumerate(widths)
        )
        if init == "kaiming":
            for layer in self.layers:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        self.modulators = nn.ModuleList(
            LinearModulator(encoded[k + 1], width, 1.0) for k, width in enumerate(widths)
        )
        self.output = nn.Linear(widths[-1], out_dim)
        self._finish_init()

    def _finish_init(self) -> None:
        self._tables: dict[int, _CellTable] = {}
        self._tables_version: tuple = ()
        self.register_load_state_dict_post_hook(_invalidate_after_load)
        self.reset_counters()

    def _act(self, z: Tensor) -> Tensor:
        """The backbone's nonlinearity on a pre-activation plus modulation."""
        return torch.sin(self.w0 * z) if self.backbone == "siren" else torch.relu(z)

    def get_out_dim(self) -> int:
        return self.out_dim

    # --- inputs ------------------------------------------------------------------------------

    def _counts(self, level: int) -> tuple[int, ...]:
        """Cells per axis at ``level`` (``C_l``)."""
        return self._level_counts[level]

    def _cell_input(self, cells: Int[Tensor, "n d"], level: int, dtype: torch.dtype) -> Tensor:
        """The backbone's input for level cells (per-axis indices at ``level``): the level's
        normalised digit (siren), or the encoded cell centre (relu)."""
        if self.backbone == "relu":
            counts = device_constant(self._counts(level), cells.device, dtype)
            return self._encode(level, (cells.to(dtype) + 0.5) / counts)
        base = device_constant(self.tiling.bank_counts[level], cells.device)
        return self._normalised(cells % base, level, dtype)

    def _encode(self, index: int, u: Float[Tensor, "n d"]) -> Tensor:
        """Encoding ``index`` (a level's, or the remainder's last) of unit-box positions, masked
        when the frequencies are being released."""
        encoded = self.encodings[index](u)
        return encoded if self.frequency_masks is None else self.frequency_masks[index](encoded)

    def _normalised(self, digits: Int[Tensor, "n d"], level: int, dtype: torch.dtype) -> Tensor:
        """``digit``: d / (B - 1) in [0, 1]; ``place``: the digit's place value d / C_l."""
        if self.digits == "place":
            return digits.to(dtype) / device_constant(self._counts(level), digits.device, dtype)
        base = device_constant(self.tiling.bank_counts[level], digits.device)
        return digits.to(dtype) / (base - 1).clamp(min=1).to(dtype)

    def level_inputs(self, x: Float[Tensor, "n d"]) -> list[Float[Tensor, "n d"]]:
        """The backbone's inputs for unit-box positions: each level's normalised digits, then the
        remainder when enabled. Digits come from the finest cell by integer division, so every
        level's cell is exactly its finer cells' parent (also where ``x C_l`` rounds)."""
        finest = self.num_levels - 1
        scaled, cells = self._finest_cells(x)
        inputs = []
        for level in range(self.num_levels):
            coarser = device_constant(self._counts(finest), x.device) // device_constant(
                self._counts(level), x.device
            )
            inputs.append(self._cell_input(cells // coarser, level, x.dtype))
        if self.remainder:
            inputs.append(self._remainder(x, scaled, cells))
        return inputs

    def _finest_cells(self, x: Float[Tensor, "n d"]) -> tuple[Float[Tensor, "n d"], Int[Tensor, "n d"]]:
        """``x`` in units of the finest cells, and the finest cell (per-axis index) it is looked up
        in: its own, or a neighbour's within ``cell_jitter / 2`` cells in training passes."""
        finest = self.num_levels - 1
        scaled = self.tiling.scaled(x, finest)
        if not (self.cell_jitter > 0 and self.training and torch.is_grad_enabled()):
            return scaled, torch.floor(scaled).long()
        counts = device_constant(self._counts(finest), x.device, x.dtype)
        shifted = x + (torch.rand_like(x) - 0.5) * (self.cell_jitter / counts)
        return scaled, torch.floor(self.tiling.scaled(shifted, finest)).long()

    def _remainder(self, x: Tensor, scaled: Tensor, cells: Int[Tensor, "n d"]) -> Tensor:
        """The last input: the position inside the finest cell (the fraction, or with place values
        its share of ``x``), or with the relu backbone the encoded position."""
        if self.backbone == "relu":
            return self._encode(len(self.encodings) - 1, x)
        dtype = x.dtype
        fraction = scaled - cells
        if self.digits == "place":
            fraction = fraction / device_constant(self._counts(self.num_levels - 1), scaled.device)
        return fraction.to(dtype)

    # --- the two paths -----------------------------------------------------------------------

    def forward(self, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b o"]:
        """Shared or direct path by ``sharing`` (identical results)."""
        if x.shape[-1] != self.in_dim:
            raise ConfigError(f"ASMR is {self.in_dim}-D but positions have {x.shape[-1]} coordinates")
        shared = self.sharing == "always" or (self.sharing == "inference" and not torch.is_grad_enabled())
        flat = x.reshape(-1, self.in_dim)
        out = self.forward_shared(flat) if shared else self.forward_direct(flat)
        return out.reshape(*x.shape[:-1], self.out_dim)

    def forward_direct(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n o"]:
        """Every layer per input (the paper's training path)."""
        inputs = self.level_inputs(x)
        h = inputs[0]
        for k, (layer, modulator) in enumerate(zip(self.layers, self.modulators, strict=True)):
            h = self._act(layer(h) + modulator(inputs[k + 1]))
        return self.output(h)

    def forward_shared(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n o"]:
        """Each layer once per distinct cell of its level; only the remainder's layer and the output
        per input."""
        self._check_tables()
        self.shared_inputs += len(x)
        finest = self.num_levels - 1
        scaled, per_axis = self._finest_cells(x)
        cells, inverse = torch.unique(flatten_index(per_axis, self._counts(finest)), return_inverse=True)
        if self.remainder:
            z = self._preactivation(finest, cells, x.dtype).index_select(0, inverse)
            remainder = self._remainder(x, scaled, per_axis)  # per input, not shareable
            h = self._act(z + self.modulators[finest](remainder))
            self.shared_macs += self.modulators[finest].macs_per_sample() * len(x)
            return self._linear(self.output, h)
        return self._linear(self.output, self._activation(finest, cells, x.dtype)).index_select(0, inverse)

    # --- shared-path pieces --------------------------------------------------------------------

    def _linear(self, layer: nn.Linear, h: Tensor) -> Tensor:
        self.shared_macs += layer.in_features * layer.out_features * h.shape[0]
        return layer(h)

    def _activation(self, level: int, cells: Int[Tensor, " m"], dtype: torch.dtype) -> Tensor:
        """``h_level`` of distinct level cells (flat keys): level 0's input, or the nonlinearity of
        the parent cells' pre-activation plus this level's modulation."""
        per_axis = _unflatten(cells, self._counts(level))
        bases = self.tiling.bank_counts[level]
        if level == 0:
            return self._cell_input(per_axis, 0, dtype)
        base = device_constant(tuple(bases), cells.device)
        parents, inverse = torch.unique(
            flatten_index(per_axis // base, self._counts(level - 1)), return_inverse=True
        )
        z = self._preactivation(level - 1, parents, dtype).index_select(0, inverse)
        if self.backbone == "relu":  # the cell centre's encoding, one table row per axis value
            tables, offsets = self._axis_modulation(level, dtype, cells.device)
            for index in (per_axis + offsets).unbind(1):
                z += tables.index_select(0, index)
            return z.relu_()
        # the siren's modulation depends on this level's digit alone: one row per digit value
        modulator = self.modulators[level - 1]
        values = _unflatten(torch.arange(math.prod(bases), device=cells.device), bases)
        modulation = modulator(self._cell_input(values, level, dtype))
        self.shared_macs += modulator.macs_per_sample() * len(values)
        return self._act(z + modulation.index_select(0, flatten_index(per_axis % base, bases)))

    def _axis_modulation(self, level: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """The relu backbone's modulation of level cells as a sum over axes: each column of the
        positional encoding depends on one coordinate, so with ``e_a(v)`` the encoding of the centre
        of the cell whose index on axis ``a`` is ``v`` and 0 on the others, and ``g_0`` that of cell
        0's centre, ``g(c) = sum_a e_a(c_a) - (d - 1) g_0`` and ``V g(c) = sum_a V e_a(c_a) - (d - 1)
        V g_0``. Returns the rows ``V e_a(v)`` of every axis stacked (the constant folded into the
        first axis's), and where each axis's rows start: a cell's modulation is the sum of its axes'
        rows, ``C_l`` rows an axis instead of one a cell (at 1/64 of the box, 193 rows for the ~190K
        cells one 100x75 image touches)."""
        counts = self._counts(level)
        cells = torch.zeros(sum(counts) + 1, self.in_dim, dtype=torch.long, device=device)  # last: cell 0
        first = 0
        for axis, n in enumerate(counts):
            cells[first : first + n, axis] = torch.arange(n, device=device)
            first += n
        modulator = self.modulators[level - 1]
        rows = modulator(self._cell_input(cells, level, dtype))
        self.shared_macs += modulator.macs_per_sample() * len(rows)
        tables = torch.cat([rows[: counts[0]] - (self.in_dim - 1) * rows[-1], rows[counts[0] : -1]])
        offsets = device_constant(tuple(sum(counts[:axis]) for axis in range(len(counts))), device)
        return tables, offsets

    def _preactivation(self, level: int, cells: Int[Tensor, " m"], dtype: torch.dtype) -> Tensor:
        """``W_level h_level + b_level`` of distinct level cells (sorted flat keys, as ``unique``
        gives them); in inference from the tables."""

        def compute(c: Tensor) -> Tensor:
            return self._linear(self.layers[level], self._activation(level, c, dtype))

        if torch.is_grad_enabled() or self.sharing == "never":
            return compute(cells)
        table = self._tables.get(level)
        if table is None:
            size = math.prod(self._counts(level))
            if size <= self.dense_cells and not self.training:
                table = _CellTable(compute(torch.arange(size, device=cells.device)))
            elif self.lazy_cells > 0:
                width = self.layers[level].out_features
                table = _CellTable(torch.zeros(0, width, dtype=dtype, device=cells.device), cache=True)
            else:
                return compute(cells)
            self._tables[level] = table
        values, found = table.lookup(cells)
        if bool(found.all()):
            return values
        cold = not bool(found.any())  # a cold pass: every row is new, nothing to merge into values
        missing = cells if cold else cells[~found]
        computed = compute(missing)
        table.insert(missing, computed, self.lazy_cells)
        if cold:
            return computed
        values[~found] = computed
        return values

    def _check_tables(self) -> None:
        """Drop the tables when any parameter or buffer (a frequency mask's progress) changed in place
        since they were built."""
        version = tuple((t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers()))
        if version != self._tables_version:
            self._tables, self._tables_version = {}, version

    def invalidate_tables(self) -> None:
        """Drop the inference tables. Automatic on checkpoint loads and device or dtype moves (not on
        train/eval switches: the viewer switches around every render); call it after changing
        parameters where autograd's version counters do not see it (writes through ``.data``,
        fused optimizers)."""
        self._tables, self._tables_version = {}, ()

    def _apply(self, fn, *args, **kwargs):  # every .to / .double / .cuda goes through here
        self.invalidate_tables()
        return super()._apply(fn, *args, **kwargs)

    def table_bytes(self) -> int:
        """Memory held by the inference tables now."""
        return sum(t.values.numel() * t.values.element_size() for t in self._tables.values())

    # --- inspection ----------------------------------------------------------------------------

    #: what the region map shows: the cell whose activation a position shares at a level
    region_name = "cell"

    def region_levels(self) -> int:
        return self.num_levels

    def region_ids(self, x: Float[Tensor, "n d"], level: int) -> Int[Tensor, " n"]:
        """Flat index of the level-``level`` cell holding unit-box positions ``x``: positions with
        the same id share layer ``level``'s activation."""
        return self.tiling.cell_index(x, level)

    # --- accounting ----------------------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zero the shared path's counts of executed multiply-accumulates and of inputs."""
        self.shared_macs = 0
        self.shared_inputs = 0

    def shared_macs_per_sample(self) -> float:
        """Multiply-accumulates the shared path executed per input since :meth:`reset_counters`,
        table builds included: what sharing costs on the inputs actually seen."""
        return self.shared_macs / max(self.shared_inputs, 1)

    def macs_per_sample(self) -> int:
        """Direct path: every layer and modulator per input."""
        layers = sum(layer.in_features * layer.out_features for layer in self.layers)
        modulators = sum(m.macs_per_sample() for m in self.modulators)
        return layers + modulators + self.output.in_features * self.output.out_features
