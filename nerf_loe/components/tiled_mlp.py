"""An MLP whose hidden layers are tiled-bank layers (Levels-of-Experts trunk), any input dimension.

``len(tiling.bank_counts)`` tiled layers of width ``hidden_dim`` (the first takes the encoded
input), each followed by the activation, then one untiled output layer. Bank selection depends on
the raw position ``x`` in the unit box, the layers on its encoding. With one bank per layer this
is a plain MLP with the same MACs (the PE-MLP baseline).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerf_loe.components.routing import Routes
from nerf_loe.components.tiled_linear import ResidualForm, TiledLinear
from nerf_loe.components.tiling import Tiling

Activation = Literal["relu", "leaky_relu"]
Init = Literal["kaiming", "torch"]
LEAKY_SLOPE = 0.2


class TiledMLP(nn.Module):
    """Tiled trunk + untiled output layer.

    ``init``: kaiming (He's initialisation for the activation, zero biases) or torch (nn.Linear's
    default, under which the trunk starts nearly constant in space and training first fits colour
    by view direction alone: chess2, loe-nerf, training PSNR 14.7 dB at step 200 against 17.7).
    The output layer keeps nn.Linear's default either way."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        tiling: Tiling,
        activation: Activation = "relu",
        residual_banks: bool = False,
        residual_scale: float = 1.0,
        init: Init = "kaiming",
        residual_form: ResidualForm = "full",
    ) -> None:
        super().__init__()
        self.tiling = tiling
        widths = [in_dim] + [hidden_dim] * tiling.num_layers
        slope = 0.0 if activation == "relu" else LEAKY_SLOPE
        gain = nn.init.calculate_gain("leaky_relu", slope) if init == "kaiming" else None
        self.layers = nn.ModuleList(
            TiledLinear(
                widths[i],
                widths[i + 1],
                tiling.num_banks(i),
                residual_banks,
                residual_scale,
                gain,
                residual_form,
            )
            for i in range(tiling.num_layers)
        )
        self.output = nn.Linear(hidden_dim, out_dim)
        self.activation = nn.ReLU() if activation == "relu" else nn.LeakyReLU(LEAKY_SLOPE)
        # residual banks: while not released, every layer is its shared matrix alone (a plain MLP,
        # at its speed: no routing); a buffer, so a resumed run keeps it
        self.register_buffer("released", torch.tensor(True))

    def forward(self, features: Float[Tensor, "n f"], x: Float[Tensor, "n d"]) -> Float[Tensor, "n o"]:
        """``features``: encoded input; ``x``: unit-box positions that pick the banks."""
        h = features
        if self.layers[0].shared is not None and not bool(self.released):  # (reading it syncs CUDA)
            for layer in self.layers:
                h = self.activation(nn.functional.linear(h, layer.shared, layer.bias))
            return self.output(h)
        shared: dict[tuple, tuple] = {}
        layout: Routes | None = None  # the layout h is in (None: sample order)
        for i, layer in enumerate(self.layers):
            routed = layer.form == "full"  # modulated banks look up per sample, in sample order
            key = (self.tiling.bank_counts[i], self.tiling.scale_values[i])
            if key not in shared:  # layers with the same tiling share one sort (e.g. partitions)
                selection = self.tiling.select(x, i)
                routes = [Routes(index, layer.num_banks) for index in selection.index] if routed else []
                shared[key] = (selection, routes)
            selection, routes = shared[key]
            # nearest blending: h stays in this layer's layout until the last tiled layer
            last = i == len(self.layers) - 1
            target = routes[0] if routes and selection.weight is None and not last else None
            h = self.activation(layer(h, selection, routes, layout, target))
            layout = target
        return self.output(h)

    @contextmanager
    def fixed_weights(self) -> Iterator[None]:
        """Within, passes without gradients form each layer's bank weights once and reuse them
        (residual banks otherwise form ``S + s R`` every pass: a few small passes, as the
        early-stopping pre-pass's windows, paid it each time); passes with gradients are unchanged.
        Parameters must not change within. Nested scopes share the outermost one's weights."""
        if any(layer.reuse for layer in self.layers):
            yield
            return
        for layer in self.layers:
            layer.reuse = True
        try:
            yield
        finally:
            for layer in self.layers:
                layer.release_formed()

    def residual_penalty(self) -> Tensor:
        """Sum over tiled layers of the mean squared bank residual (zero for independent banks)."""
        return sum((layer.residual_penalty() for layer in self.layers), self.output.bias.new_zeros(()))

    def decay_residuals(self, mult: float) -> None:
        """Penalise ``mult x residual_penalty()`` through the gradient: as each backward pass
        accumulates a layer's residual gradient, add the penalty's, ``2 mult R / R.numel()`` (L2
        weight decay), in place. One pass over the residuals a step, where the penalty as a loss
        term made about eight (square, mean and their backward, each a new tensor of every
        residual; loe-nerf has 3.2M). Exact as long as each step makes one backward pass through
        the trunk (a nerfstudio training step does) and gradients are not scaled (no mixed
        precision: :class:`~nerf_loe.models.loe_model.LoEModel` refuses it)."""
        if self.layers[0].shared is None:
            raise ValueError("decay_residuals needs residual banks (residual_banks=True)")
        for layer in self.layers:
            rate = 2.0 * mult / layer.weight.numel()
            layer.weight.register_post_accumulate_grad_hook(partial(_decay, rate))

    def macs_per_sample(self) -> int:
        """Multiply-accumulates per sample (linear blending mixes 2^d banks)."""
        corners = 2**self.tiling.dim if self.tiling.blending == "linear" else 1
        tiled = sum(layer.macs_per_sample(corners) for layer in self.layers)
        return tiled + self.output.in_features * self.output.out_features


def _decay(rate: float, parameter: Tensor) -> None:
    parameter.grad.add_(parameter, alpha=rate)
