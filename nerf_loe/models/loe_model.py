"""Levels-of-Experts NeRF: the LoE field rendered by occupancy-grid marching.

The same model runs the equal-MAC baselines: ``tiling="hierarchical"`` is LoE, one bank per layer
is the PE-MLP, and ``tiling="partition"`` with equal counts at every layer is the Partition /
KiloNeRF-style grid of small networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from nerfstudio.cameras.rays import Frustums, RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter

from nerf_loe.compat.lpips import OfflineLPIPS
from nerf_loe.components.implementation import choose_implementation
from nerf_loe.components.tiled_mlp import Activation
from nerf_loe.components.tiling import Blending, Tiling, TilingLayout
from nerf_loe.errors import ConfigError
from nerf_loe.evaluation.complexity import format_complexity
from nerf_loe.fields.loe_field import LoEField
from nerf_loe.rendering.marcher import GridMarcherConfig
from nerf_loe.rendering.volume_rendering import BackgroundColor


def parse_banks(spec: tuple[str, ...]) -> list[tuple[int, ...]]:
    """``("2x2x2", "4x4x4")`` -> ``[(2, 2, 2), (4, 4, 4)]``; raises ConfigError on bad text."""
    try:
        counts = [tuple(int(n) for n in layer.lower().split("x")) for layer in spec]
    except ValueError:
        raise ConfigError(
            f"--pipeline.model.banks {' '.join(spec)}: write each layer as AxBxC, e.g. 4x4x4"
        ) from None
    if not counts or any(len(c) != 3 or min(c) < 1 for c in counts):
        raise ConfigError(
            f"--pipeline.model.banks {' '.join(spec)}: give one AxBxC (3 positive counts) per tiled layer"
        )
    return counts


@dataclass
class LoEModelConfig(ModelConfig):
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
    geo_feat_dim: int = 15
    color_hidden_dim: int = 64
    color_layers: int = 2
    activation: Activation = "relu"
    unbounded: bool = False
    """Real captures: scene contraction, 4 grid levels, steps growing with distance."""
    background_color: BackgroundColor = "last_sample"
    """last_sample: each ray's last sample colour fills the transmittance left, so opaque photos
    (sky, floors outside the box) need no opaque wall; white/black/random for known backgrounds."""
    marcher: GridMarcherConfig = field(default_factory=GridMarcherConfig)
    eval_num_rays_per_chunk: int = 4096

    def __post_init__(self) -> None:
        parse_banks(self.banks)
        if self.hidden_dim < 1 or self.num_frequencies < 1 or self.geo_feat_dim < 1:
            raise ConfigError("--pipeline.model.hidden-dim, num-frequencies and geo-feat-dim must be >= 1")
        if self.unbounded and self.marcher.grid_levels == 1 and self.marcher.cone_angle == 0.0:
            self.marcher.grid_levels = 4
            self.marcher.cone_angle = 1.0 / 256


class LoEModel(Model):
    """LoE field + :class:`~nerf_loe.rendering.marcher.GridMarcher`."""

    config: LoEModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.tiling = Tiling(parse_banks(cfg.banks), cfg.tiling, cfg.blending)
        aabb = self.scene_box.aabb
        self.field = LoEField(
            aabb,
            self.tiling,
            cfg.hidden_dim,
            cfg.num_frequencies,
            cfg.geo_feat_dim,
            cfg.color_hidden_dim,
            cfg.color_layers,
            activation=cfg.activation,
            contract=cfg.unbounded,
            implementation=choose_implementation(self.kwargs.get("device")),
        )
        self.marcher = cfg.marcher.setup(aabb=aabb.flatten())
        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        self.lpips = OfflineLPIPS(normalize=True)
        CONSOLE.print(format_complexity(type(self).__name__, self.field.complexity()))

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        return {"fields": list(self.field.parameters())}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=lambda step: self.marcher.update_grid(step, self.field.density_at),
            )
        ]

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        rays_o = ray_bundle.origins.reshape(-1, 3)
        rays_d = ray_bundle.directions.reshape(-1, 3)
        n_rays = rays_o.shape[0]
        samples = self.marcher.sample(rays_o, rays_d, self.field.density_at)
        idx = samples.ray_indices
        pixel_area = ray_bundle.pixel_area.reshape(-1, 1)[idx]
        ray_samples = RaySamples(
            frustums=Frustums(
                origins=rays_o[idx],
                directions=rays_d[idx],
                starts=samples.t_starts[:, None],
                ends=samples.t_ends[:, None],
                pixel_area=pixel_area,
            )
        )
        field_outputs = self.field(ray_samples)
        return self.marcher.render(
            samples,
            field_outputs[FieldHeadNames.DENSITY][:, 0],
            field_outputs[FieldHeadNames.RGB],
            n_rays,
            self.config.background_color,
        )

    def _target_rgb(self, image: Tensor, background: Tensor) -> Tensor:
        """Ground truth on the same background as the prediction (RGBA images are blended)."""
        image = image.to(self.device)
        if image.shape[-1] == 4:
            return image[..., :3] * image[..., 3:] + background * (1.0 - image[..., 3:])
        return image

    def get_metrics_dict(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        image = self._target_rgb(batch["image"], outputs["background"])
        return {
            "psnr": self.psnr(outputs["rgb"], image),
            "num_samples_per_batch": outputs["num_samples_per_ray"].sum(),
            "grid_occupancy": torch.tensor(self.marcher.grid.occupied_fraction()),
        }

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        image = self._target_rgb(batch["image"], outputs["background"])
        return {"rgb_loss": torch.nn.functional.mse_loss(outputs["rgb"], image)}

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        image = self._target_rgb(batch["image"], outputs["background"])
        rgb = outputs["rgb"]
        acc = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        gt_chw, rgb_chw = (torch.moveaxis(t, -1, 0)[None] for t in (image, rgb))
        metrics = {
            "psnr": float(self.psnr(gt_chw, rgb_chw).item()),
            "ssim": float(self.ssim(gt_chw, rgb_chw)),
            "lpips": float(self.lpips(gt_chw, rgb_chw)),
        }
        images = {"img": torch.cat([image, rgb], dim=1), "accumulation": acc, "depth": depth}
        return metrics, images
