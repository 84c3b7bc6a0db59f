"""ASMR NeRF: the radiance field with an ASMR trunk (activation sharing at render time).

The trunk reads the sample's mixed-radix digits one level per layer and the position inside the
finest cell last (:mod:`nerf_loe.components.asmr`); density and colour heads are those of every
method here, so asmr-nerf and loe-nerf compare on their trunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.viewer.viewer_elements import ViewerCheckbox
from torch import nn

from nerf_loe.components.asmr import ASMR, Backbone, Digits, Modulator, Sharing
from nerf_loe.components.tiled_mlp import Init
from nerf_loe.components.tiling import parse_counts
from nerf_loe.errors import ConfigError
from nerf_loe.models.field_model import FieldModel, FieldModelConfig
from nerf_loe.rendering.marcher import GridMarcherConfig


@dataclass
class ASMRModelConfig(FieldModelConfig):
    """ASMR NeRF."""

    _target: type = field(default_factory=lambda: ASMRModel)
    bases: tuple[str, ...] = ("2x2x2", "4x4x4", "4x4x4", "4x4x4")
    """Per level, the digit base per axis (AxBxC). The first hidden layer reads level 0; each later
    level, then the position inside the finest cell, modulates one more: as many hidden layers as
    levels (here 4), then the output layer. Cells per axis at level l: the product of the bases up
    to l (here 2, 8, 32, 128)."""
    density_bias: float = -2.0
    """As for every method (empty space starts at density ~exp(density_bias) per scene-box side), but
    lower: the box starts clear (a ray across it keeps ~85% of its light, against ~41% at the other
    methods' -0.3). At -0.3 some seeds' first ~50 steps raise the density everywhere and the box
    turns opaque, its walls painted with the scene (chess2, seed 45: the grid 100% occupied for 600
    steps, 14.33 dB there), or fill it with fog (seed 43: 36 samples shaded a ray by step 400). At
    -2, after 600 steps: seed 45 21.65 dB, seed 43 21.81 at 12.5 samples a ray
    (results/training_profile_chess2_cpu_asmr{,_bias2}_seed4{3,5}.md); 300 s, seeds 42-46: 23.64-23.98
    dB (median 23.70, 1.15-1.27x mlp-nerf's steps) where -0.3 gave 21.85-23.72 (median 23.63);
    mlp-nerf 23.85-24.28 (results/asmr_bias2_chess2_300s_seed4*.md, asmr_axis_chess2_300s*.md)."""
    marcher: GridMarcherConfig = field(default_factory=lambda: GridMarcherConfig(spare_formless_start=True))
    """As for every method, but the grid's first update spares the formless untrained field that
    density bias -2 gives (``GridMarcherConfig.spare_formless_start``)."""
    hidden_dim: int = 128
    """Width of the backbone."""
    fine_dim: int = 96
    """Width of the last layer, the one the position inside the finest cell modulates: it runs per
    sample after sharing, so with the output layer and the colour head it sets what sharing cannot
    remove, (remainder encoding + out) x fine-dim MACs a sample. chess2, 300 s on the CPU, one run
    each against mlp-nerf's 24.72 dB: 64 wide 23.81 dB at 9,450 MACs a sample over the test set
    (6.3x fewer), 96 wide 24.12 at 12,379 (4.8x), 96 wide with 7 remainder bands 24.01 at 11,801
    (5.1x); at 1000 steps 21.92 / 22.90 / 22.73 against 23.03: the narrow layer underfits
    (results/asmr_fine_dim_chess2_300s_*.md)."""
    backbone: Backbone = "relu"
    """relu: each layer reads the positional encoding of its level's cell centre, the remainder
    layer that of the position (:mod:`nerf_loe.components.asmr`), with the same sharing; siren:
    the paper's backbone (train it at lr 5e-4). w0, modulator and digits apply to siren only.
    chess2, 150 s on the CPU: relu 22.55 dB; the siren stalled near 15.6 dB."""
    remainder_frequencies: int = 7
    """relu backbone: how many of the highest frequency bands the last layer's encoding of the
    position keeps, up to half a period across a finest cell (8 at 128 cells: the PE-MLP's pi ..
    128 pi; the lower bands repeat the finest cell centre's). It is the per-sample cost sharing
    cannot remove: (3 + 6 x bands) x fine-dim MACs. 7 drops the pi band, which the finest cell
    centre's encoding carries almost unchanged (its centre lies within 1/256 of x), and keeps a
    96-wide last layer within 5x fewer MACs than mlp-nerf. chess2, 300 s on the CPU, 128-wide last
    layer: 8 bands 23.28 dB, 3 bands 21.55, 0 bands 21.28 (fewer bands stall the start;
    results/asmr_remainder_bands_chess2.md)."""
    init: Init = "kaiming"
    """relu backbone: its layers' initialisation, kaiming (He's, zero biases) or torch (nn.Linear's
    default, the earlier behaviour, under which training starts on the ~14 dB plateau of
    :class:`~nerf_loe.components.tiled_mlp.TiledMLP`'s ``init``). 90 s on the CPU, test PSNR at
    60 / 90 s: chess2 19.26 / 20.39 dB against 17.50 / 20.86, lamppost 31.48 / 33.04 against
    30.91 / 32.48 (results/asmr_init_{kaiming,torch}_90s.md)."""
    w0: float = 30.0
    """SIREN frequency."""
    modulator: Modulator = "linear"
    """linear (the paper's default: w0 V d with PyTorch's init on normalised digits; V d with the
    SIREN first-layer init on place values) or nonlinear (a 3-layer, 32-wide SIREN per level)."""
    digits: Digits = "place"
    """place: each digit by its place value (the inputs sum to the position, so neighbouring cells
    start alike: a smooth field); digit: digits normalised to [0, 1], the paper's raster input,
    which starts every cell unrelated to its neighbours. On a procedural object scene after 200
    steps: place 18.5 dB, digit 16.0 dB."""
    sharing: Sharing = "always"
    """always: each layer once per distinct cell of its level, in training too (exact: gradients
    flow through the shared rows); inference: only when rendering without gradients (evaluation,
    viewer, the grid's density queries); never. Both sharing modes give identical results. chess2,
    600 s on the CPU: always reaches step 1000 in 414 s against 583 s, and 22.66 dB against 21.87
    (results/asmr_fine64_{always_,}chess2_600s.md)."""
    dense_cells: int = 1 << 12
    """Levels with at most this many cells keep a complete activation table while rendering in
    evaluation; finer ones (from 32^3 cells with the default bases) compute only the cells the renders
    touch, and keep them (in training, where every step changes the parameters, no-grad passes
    compute the cells they touch: chess2, 8% less time a sample). A complete 32^3 table costs more
    than a test set touches where samples are few: after 1500 steps, MACs a sample over the test set
    with 32768 / 4096 dense cells, lamppost 11,498 / 10,749 (-6.5%), chess2 10,652 / 10,477, the
    test set's time within 2% (results/asmr_tables_{lamppost,chess2}.md)."""
    lazy_cells: int = 1 << 19
    """Finer levels cache at most this many touched cells each while rendering (0: no cache)."""
    cell_jitter: float = 2.0
    """Training looks each sample's cells up at a position jittered by up to half this many finest
    cells a side (the remainder still reads the sample's own position): neighbouring cells learn
    their blend, not each the few rays through it (:class:`~nerf_loe.components.asmr.ASMR`'s
    ``cell_jitter``; 0 turns it off). Rendering is unchanged. Without it lamppost's test views
    show bright specks, single finest cells fitted to a few rays: 300 s on the CPU, seed 45, jitter 1
    against none on one VM, lamppost 35.13 dB against 34.43, woodbox 24.75 against 24.34, quilt1
    18.26 against 18.16 (results/asmr_jitter1_*_seed45.md, asmr_shipped_*_control.md). 2 against 1,
    seed 47 (woodbox 46), one VM: quilt1 19.20 against 17.78, woodbox 24.37 / 24.54, lamppost
    34.47 / 34.83, chess2 23.83 / 23.97, wineglass 23.51 / 23.14; at 1000 steps 2 is ahead on three
    (quilt1 +1.61 dB), 0.05-0.07 behind on two; 4: quilt1 18.32
    (results/asmr_jitter{1,2,4}_*_seed4{6,7}.md)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_counts(self.bases, "--pipeline.model.bases")
        for option, value, choices in (
            ("modulator", self.modulator, ("linear", "nonlinear")),
            ("digits", self.digits, ("digit", "place")),
            ("sharing", self.sharing, ("never", "inference", "always")),
            ("backbone", self.backbone, ("siren", "relu")),
            ("init", self.init, get_args(Init)),
        ):
            if value not in choices:
                raise ConfigError(f"--pipeline.model.{option} {value!r}: choose {' or '.join(choices)}")
        if min(self.hidden_dim, self.fine_dim) < 1 or not self.w0 > 0:
            raise ConfigError(
                "--pipeline.model.hidden-dim and fine-dim must be >= 1 and --pipeline.model.w0 > 0"
            )
        if self.remainder_frequencies < 0:
            raise ConfigError("--pipeline.model.remainder-frequencies must be >= 0")
        if self.dense_cells < 0 or self.lazy_cells < 0:
            raise ConfigError("--pipeline.model.dense-cells and lazy-cells must be >= 0")
        if not self.cell_jitter >= 0:
            raise ConfigError(f"--pipeline.model.cell-jitter must be >= 0 (finest cells): {self.cell_jitter}")
        if self.frequency_reg_fraction > 0 and self.backbone != "relu":
            raise ConfigError(
                "--pipeline.model.frequency-reg-fraction releases positional encodings: "
                "it needs --pipeline.model.backbone relu (the siren reads digits)"
            )

    def make_trunk(self, out_dim: int, metadata: dict) -> nn.Module:
        return ASMR(
            parse_counts(self.bases, "--pipeline.model.bases"),
            self.hidden_dim,
            out_dim,
            w0=self.w0,
            modulator=self.modulator,
            remainder=True,
            digits=self.digits,
            sharing=self.sharing,
            dense_cells=self.dense_cells,
            lazy_cells=self.lazy_cells,
            backbone=self.backbone,
            remainder_frequencies=self.remainder_frequencies,
            fine_dim=self.fine_dim,
            init=self.init,
            frequency_mask=self.frequency_reg_fraction > 0,
            cell_jitter=self.cell_jitter,
        )


class ASMRModel(FieldModel):
    """The field model with a viewer toggle for activation sharing."""

    config: ASMRModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.share_activations = ViewerCheckbox(
            "ASMR: share activations",
            self.config.sharing != "never",
            cb_hook=lambda box: self.set_sharing(bool(box.value)),
            hint="On: each layer once per cell when rendering; off: every layer per sample (same picture)",
        )

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        """The shared model's callbacks, and after every training iteration (its optimizer step) a
        drop of the trunk's inference tables: torch's fused Adam, the methods' optimizer, writes
        the parameters without the version counters the tables are otherwise checked against, and
        the grid's density queries, evaluation and the viewer would read stale rows."""

        def drop_tables(step: int) -> None:
            self.field.trunk.invalidate_tables()

        return [
            *super().get_training_callbacks(training_callback_attributes),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], drop_tables),
        ]

    def set_sharing(self, on: bool) -> None:
        """Render with the shared path (the configured mode, or ``inference`` if that is ``never``)
        or the direct one; the pictures are the same, the cost is not."""
        configured = self.config.sharing if self.config.sharing != "never" else "inference"
        self.field.trunk.sharing = configured if on else "never"
