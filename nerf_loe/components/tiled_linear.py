"""A linear layer whose weight matrix is chosen per sample from a bank (Levels-of-Experts layer).

``h_out = sum_k w_k W[j_k] h + b``: the banks ``W[j]`` are selected by a :class:`Tiling`; the bias
is shared. With one bank it is exactly ``nn.Linear``. Compute per sample equals one dense layer
(nearest blending) or ``2^d`` of them (linear blending), whatever the number of banks.

Banks are either independent matrices, or (``residual=True``) one shared matrix plus a scaled
residual per bank, ``W[j] = S + s R[j]`` with ``R`` starting at zero: the layer then starts as the
plain ``nn.Linear`` ``S`` and specialises per region only as far as the data (and a penalty on
``R``) allow. Under Adam, whose steps do not depend on the gradient's scale, ``s`` is the
residuals' learning rate relative to the shared matrix's. The sum is formed once per forward
pass, so the per-sample cost is unchanged.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from nerf_loe.components.routing import Routes
from nerf_loe.components.tiling import BankSelection


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
    ) -> None:
        super().__init__()
        self.residual_scale = residual_scale
        self.gain = gain
        """He initialisation for an activation of this gain (None: nn.Linear's default)."""
        self.in_features = in_features
        self.out_features = out_features
        self.num_banks = num_banks
        self.weight = nn.Parameter(torch.empty(num_banks, out_features, in_features))
        """The banks (independent), or the per-bank residuals ``R`` (residual)."""
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
        """The weight matrix of every bank. Within :meth:`TiledMLP.fixed_weights
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
        with linear blending: sample order."""
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

    def extra_repr(self) -> str:
        kind = "residual" if self.shared is not None else "independent"
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
