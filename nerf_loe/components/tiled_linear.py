"""A linear layer whose weight matrix is chosen per sample from a bank (Levels-of-Experts layer).

``h_out = sum_k w_k W[j_k] h + b``: the banks ``W[j]`` are selected by a :class:`Tiling`; the bias
is shared. With one bank it is exactly ``nn.Linear``. Compute per sample equals one dense layer
(nearest blending) or ``2^d`` of them (linear blending), whatever the number of banks.

Banks are either independent matrices, or (``residual=True``) one shared matrix plus a scaled
residual per bank that starts at zero, so the layer starts as the plain ``nn.Linear`` ``S`` and
specialises per region only as far as the data (and a penalty on the residuals) allow. Under Adam,
whose steps do not depend on the gradient's scale, ``s`` is the residuals' learning rate relative
to the shared matrix's. Two forms of residual:

- ``full``: ``W[j] = S + s R[j]``, any matrix per bank. The sum is formed once per forward pass, so
  the per-sample cost is one dense layer's, but each bank's rows take their own matrix product
  (:mod:`~nerf_loe.components.routing`).
- ``modulated``: bank ``j`` scales the shared matrix's rows and shifts the bias,
  ``W[j] = diag(1 + s g[j]) S`` and ``b[j] = b + s c[j]`` (FiLM-like: ``2 x out`` parameters a bank
  against ``out x in``). ``W[j] h + b[j] = S h + b + s (g[j] * S h + c[j])``: one dense product for
  every sample and a per-sample lookup of ``(g, c)``, no routing. Linear blending mixes the
  looked-up ``(g, c)`` (the bank maps are linear in them and the weights sum to one), not ``2^d``
  products.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from nerf_loe.components.routing import Routes
from nerf_loe.components.tiling import BankSelection
from nerf_loe.errors import ConfigError

ResidualForm = Literal["full", "modulated"]


class TiledLinear(nn.Module):
    """``num_banks`` weight matrices of shape [out, in] and one shared bias."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_banks: int,
        residual: bool = False,
        residual_scale: float = 1.0,
        gain: float | None = None,
        form: ResidualForm = "full",
    ) -> None:
        super().__init__()
        if form not in get_args(ResidualForm):
            raise ConfigError(f"residual form {form!r}: choose full or modulated")
        if form == "modulated" and not residual:
            raise ConfigError("modulated banks are residuals of a shared matrix: they need residual banks")
        self.form = form
        self.residual_scale = residual_scale
        self.gain = gain
        """He initialisation for an activation of this gain (None: nn.Linear's default)."""
        self.in_features = in_features
        self.out_features = out_features
        self.num_banks = num_banks
        shape = (num_banks, out_features, in_features) if form == "full" else (num_banks, 2, out_features)
        self.weight = nn.Parameter(torch.empty(shape))
        """The banks (independent), the per-bank residuals ``R`` (full residuals), or each bank's row
        scales and bias shifts ``(g, c)`` (modulated)."""
        self.shared = nn.Parameter(torch.empty(out_features, in_features)) if residual else None
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reuse = False
        """Form the bank weights once and reuse them in passes without gradients (set by
        :meth:`TiledMLP.fixed_weights <nerf_loe.components.tiled_mlp.TiledMLP.fixed_weights>`)."""
        self._formed: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every bank independently (independent banks) or the shared matrix, with zero
        residuals (residual banks). With a ``gain``: He's uniform weights of standard deviation
        ``gain / sqrt(in)`` and zero bias, which keep the activations' second moment through the
        layers; else nn.Linear's default, ``U(-1/sqrt(in), 1/sqrt(in))`` weights and bias, under
        which a ReLU stack shrinks the input's share of every layer about sixfold, so a deep
        trunk starts almost constant in space (its bias terms dominate)."""
        fan_in = self.in_features
        bound = 1.0 / math.sqrt(fan_in) if self.gain is None else self.gain * math.sqrt(3.0 / fan_in)
        nn.init.uniform_(self.weight if self.shared is None else self.shared, -bound, bound)
        if self.shared is not None:
            nn.init.zeros_(self.weight)
        if self.gain is None:
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            nn.init.zeros_(self.bias)

    def bank_weights(self) -> Float[Tensor, "banks d_out d_in"]:
        """The weight matrix of every bank (full form). Within :meth:`TiledMLP.fixed_weights
        <nerf_loe.components.tiled_mlp.TiledMLP.fixed_weights>` residual banks are formed once and
        serve every pass, the one with gradients too (a training step's pre-pass and its shading
        pass then share one ``S + s R``)."""
        if self.shared is None:
            return self.weight
        if not self.reuse:
            return _BankSum.apply(self.shared, self.weight, self.residual_scale, None)
        if self._formed is None:
            with torch.no_grad():
                self._formed = torch.add(self.shared, self.weight, alpha=self.residual_scale)
        if torch.is_grad_enabled():
            return _BankSum.apply(self.shared, self.weight, self.residual_scale, self._formed)
        return self._formed

    def release_formed(self) -> None:
        """Stop reusing bank weights and drop the ones formed."""
        self.reuse, self._formed = False, None

    def residual_penalty(self) -> Tensor:
        """Mean squared residual (zero for independent banks)."""
        if self.shared is None:
            return self.weight.new_zeros(())
        flat = self.weight.flatten()
        return torch.dot(flat, flat) / flat.numel()  # one pass, no squared copy

    def forward(
        self,
        x: Float[Tensor, "... d_in"],
        selection: BankSelection,
        routes: list[Routes] | None = None,
        source: Routes | None = None,
        target: Routes | None = None,
    ) -> Float[Tensor, "... d_out"]:
        """Apply the selected banks. ``routes`` may pass precomputed groupings (one per candidate).
        With nearest blending ``x`` may arrive in the layout of ``source`` and the output leave in
        that of ``target`` (see :func:`~nerf_loe.components.routing.rearrange`); None, and always
        with linear blending or modulated banks: sample order."""
        if self.form == "modulated":
            if source is not None or target is not None:
                raise ValueError("modulated banks route nothing: pass rows in sample order")
            return self._modulated(x, selection)
        if routes is None:
            routes = [Routes(index, self.num_banks) for index in selection.index]
        weights = self.bank_weights()
        if selection.weight is None:
            return routes[0].apply(x, weights, source, target) + self.bias
        if source is not None or target is not None:
            raise ValueError("linear blending mixes several banks' layouts: pass rows in sample order")
        out = self.bias.expand(x.shape[0], -1)
        for route, w in zip(routes, selection.weight, strict=True):
            out = out + w[:, None] * route.apply(x, weights)
        return out

    def _modulated(self, x: Float[Tensor, "n d_in"], selection: BankSelection) -> Float[Tensor, "n d_out"]:
        """``S x * (1 + s g) + (b + s c)`` with each sample's (blended) ``(g, c)``: the two bank
        tables are formed once a pass (banks x out), then one lookup and one multiply-add a sample."""
        s = self.residual_scale
        scale_table = self.weight[:, 0].mul(s).add(1.0)
        shift_table = self.weight[:, 1].mul(s).add(self.bias)
        shared = nn.functional.linear(x, self.shared)
        if selection.weight is None:
            return _Modulate.apply(shared, scale_table, shift_table, selection.index[0])
        table = torch.cat([scale_table, shift_table], 1)
        pairs = zip(selection.index, selection.weight, strict=True)
        scale, shift = sum(w[:, None] * table.index_select(0, i) for i, w in pairs).chunk(2, 1)
        return torch.addcmul(shift, shared, scale)

    def macs_per_sample(self, corners: int) -> int:
        """Multiply-accumulates per sample when ``corners`` banks are blended: full banks apply
        each corner's matrix; modulated ones one matrix, the row scales, and blend the lookups."""
        if self.form == "full":
            return self.in_features * self.out_features * corners
        blend = 2 * self.out_features * corners if corners > 1 else 0
        return self.in_features * self.out_features + self.out_features + blend

    def extra_repr(self) -> str:
        kind = "independent" if self.shared is None else f"residual, {self.form}"
        return f"in={self.in_features}, out={self.out_features}, banks={self.num_banks} ({kind})"


class _BankSum(torch.autograd.Function):
    """``W[j] = S + s R[j]`` in one kernel (not a scaled copy of ``R``, then a sum), with a backward
    that scales ``dW`` into ``dR`` in place, where autograd's own writes a new tensor of every bank.
    In place is safe: ``dW`` is the routed matmul's fresh weight gradient (or autograd's sum of
    several), used by nothing else."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, shared: Tensor, residual: Tensor, scale: float, formed: Tensor | None
    ) -> Tensor:
        """``formed``: the sum already formed from these parameters (reused), or None."""
        ctx.scale = scale
        return torch.add(shared, residual, alpha=scale) if formed is None else formed

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad_shared = grad.sum(0) if ctx.needs_input_grad[0] else None
        grad_residual = grad.mul_(ctx.scale) if ctx.needs_input_grad[1] else None
        return grad_shared, grad_residual, None, None


class _Modulate(torch.autograd.Function):
    """``y = z * A[j] + B[j]`` for each sample's bank ``j``, with a backward that sums the tables'
    gradients per bank straight from ``dy`` (autograd's would keep and gather more copies of
    ``n x out`` tensors)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, z: Tensor, scale_table: Tensor, shift_table: Tensor, index: Tensor
    ) -> Tensor:
        scale = scale_table.index_select(0, index)
        ctx.save_for_backward(z, scale, index)
        ctx.num_banks = scale_table.shape[0]
        return torch.addcmul(shift_table.index_select(0, index), z, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        z, scale, index = ctx.saved_tensors
        needs = ctx.needs_input_grad
        table_shape = (ctx.num_banks, grad.shape[1])
        grad_z = grad * scale if needs[0] else None
        grad_scale = grad.new_zeros(table_shape).index_add_(0, index, grad * z) if needs[1] else None
        grad_shift = grad.new_zeros(table_shape).index_add_(0, index, grad) if needs[2] else None
        return grad_z, grad_scale, grad_shift, None
