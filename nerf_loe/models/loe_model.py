"""Levels-of-Experts NeRF: the radiance field with LoE's tiled-bank trunk.

The same config runs the equal-MAC baselines: ``tiling="hierarchical"`` is LoE, one bank per layer
is the PE-MLP, and ``tiling="partition"`` with equal counts at every layer is the Partition /
KiloNeRF-style grid of small networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

from nerf_loe.components.tiled_linear import ResidualForm
from nerf_loe.components.tiled_mlp import Activation, Init
from nerf_loe.components.tiling import Blending, Tiling, TilingLayout, parse_counts
from nerf_loe.errors import ConfigError
from nerf_loe.fields.radiance_field import LoETrunk
from nerf_loe.models.field_model import FieldModel, FieldModelConfig


@dataclass
class LoEModelConfig(FieldModelConfig):
    """Levels-of-Experts NeRF (and its PE-MLP / Partition baselines)."""

    _target: type = field(default_factory=lambda: LoEModel)
    banks: tuple[str, ...] = ("2x2x2", "4x4x4", "4x4x4", "4x4x4")
    """Per tiled layer, the banks per axis (AxBxC). 1x1x1 everywhere is the plain MLP."""
    tiling: TilingLayout = "hierarchical"
    """hierarchical (LoE), interleaved (single-scale ablation) or partition (non-repeating regions)."""
    blending: Blending = "nearest"
    """nearest: one bank per sample; linear: tent mix of 8 banks (8x the trunk MACs)."""
    hidden_dim: int = 128
    """Width of the tiled trunk."""
    num_frequencies: int = 8
    """Positional-encoding frequencies of the normalised position."""
    activation: Activation = "relu"
    init: Init = "kaiming"
    """Trunk initialisation: kaiming (He's, zero biases) or torch (nn.Linear's default; the trunk
    starts nearly constant in space and training first fits colour by view direction alone)."""
    residual_banks: bool = False
    """Banks as one shared matrix plus per-bank residuals that start at zero: LoE starts as its MLP."""
    residual_scale: float = 1.0
    """With residual_banks: bank j's weight is shared + residual_scale * residual_j; under Adam this
    is the residuals' learning rate relative to the shared matrix's."""
    residual_form: ResidualForm = "full"
    """With residual_banks: full (bank j's weight is shared + residual_scale * R_j, any matrix; each
    bank's samples take their own product) or modulated (bank j scales the shared matrix's rows by
    1 + residual_scale * g_j and shifts the bias by residual_scale * c_j: one dense product for
    every sample and a lookup, no routing)."""
    residual_penalty_mult: float = 0.0
    """Weight of the residuals' size (with residual_banks), the sum over tiled layers of the mean
    squared stored residual ``R`` (full banks: the weight offset is ``residual_scale * R``; modulated
    ones: each bank's ``(g, c)``), as if in the loss; applied through the gradient (L2 weight decay;
    logged as the metric ``residual_penalty``)."""
    residual_release_step: int = 0
    """With residual_banks: the residuals are used and trained from this training step on; before
    it every layer is its shared matrix, a plain MLP at the MLP's speed (no routing). 0: from the
    start (loe-nerf: 1000)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_counts(self.banks, "--pipeline.model.banks")
        if self.init not in get_args(Init):
            raise ConfigError(f"--pipeline.model.init {self.init!r}: choose {' or '.join(get_args(Init))}")
        if self.hidden_dim < 1 or self.num_frequencies < 1:
            raise ConfigError("--pipeline.model.hidden-dim and num-frequencies must be >= 1")
        form = self.residual_form
        if form not in get_args(ResidualForm):
            raise ConfigError(f"--pipeline.model.residual-form {form!r}: choose full or modulated")
        if form == "modulated" and not self.residual_banks:
            raise ConfigError(
                "--pipeline.model.residual-form modulated needs --pipeline.model.residual-banks True"
            )
        if self.residual_release_step < 0:
            raise ConfigError("--pipeline.model.residual-release-step must be >= 0")
        if self.residual_penalty_mult < 0:  # a negative weight would silently mean no penalty
            raise ConfigError("--pipeline.model.residual-penalty-mult must be >= 0")
        if self.residual_release_step > 0 and not self.residual_banks:
            raise ConfigError(
                f"--pipeline.model.residual-release-step {self.residual_release_step} trains a shared "
                "matrix first, which independent banks (--pipeline.model.residual-banks False) lack: "
                "add --pipeline.model.residual-release-step 0"
            )

    @property
    def penalised(self) -> bool:
        """Whether the residual penalty acts (residual banks and a positive weight)."""
        return self.residual_banks and self.residual_penalty_mult > 0

    def make_trunk(self, out_dim: int, metadata: dict) -> nn.Module:
        tiling = Tiling(parse_counts(self.banks, "--pipeline.model.banks"), self.tiling, self.blending)
        return LoETrunk(
            tiling,
            out_dim,
            self.hidden_dim,
            self.num_frequencies,
            self.activation,
            residual_banks=self.residual_banks,
            residual_scale=self.residual_scale,
            frequency_mask=self.frequency_reg_fraction > 0,
            init=self.init,
            residual_form=self.residual_form,
        )


class LoEModel(FieldModel):
    """The field model with LoE's bank-residual penalty and release."""

    config: LoEModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.field.trunk.mlp.released.fill_(self.config.residual_release_step == 0)
        if self.config.penalised:
            self.field.trunk.mlp.decay_residuals(self.config.residual_penalty_mult)

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        scaler = attributes.grad_scaler
        if self.config.penalised and scaler is not None and scaler.is_enabled():
            raise ConfigError(
                "--pipeline.model.residual-penalty-mult acts on the gradient, which mixed precision "
                "scales: train with --mixed-precision False (loe-nerf's default) or set the penalty to 0"
            )
        callbacks = super().get_training_callbacks(attributes)
        if self.config.residual_release_step > 0:
            released = self.field.trunk.mlp.released
            release_step = self.config.residual_release_step
            trainer = attributes.trainer
            if trainer is not None and trainer.config.max_num_iterations <= release_step:
                CONSOLE.print(
                    f"[yellow]The banks act from step {release_step} "
                    f"(--pipeline.model.residual-release-step), past this run's "
                    f"{trainer.config.max_num_iterations} steps: it trains the plain MLP throughout. "
                    "Pass a smaller release step to train the banks."
                )

            def release_banks(step: int) -> None:
                released.fill_(step >= release_step)

            callbacks.append(
                TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], release_banks)
            )
        return callbacks

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        """With the residual penalty: its value (in the gradient, not the loss: see
        :meth:`~nerf_loe.components.tiled_mlp.TiledMLP.decay_residuals`)."""
        metrics = super().get_metrics_dict(outputs, batch)
        if self.config.penalised:
            with torch.no_grad():
                penalty = self.field.trunk.mlp.residual_penalty()
            metrics["residual_penalty"] = self.config.residual_penalty_mult * penalty
        return metrics
