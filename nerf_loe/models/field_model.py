"""The model every method of this package shares: a radiance field around a method's trunk,
rendered by occupancy-grid marching.

A method's config subclasses :class:`FieldModelConfig` and says how to build its trunk
(``make_trunk``); scene extent, background, marching, losses and metrics are common, so methods
differ only where their papers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from nerfstudio.cameras.rays import Frustums, RayBundle, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO
from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerControl, ViewerSlider
from torch import Tensor, nn
from torch.nn import Parameter

from nerf_loe.compat.lpips import OfflineLPIPS
from nerf_loe.components.frequency_mask import FrequencyMask
from nerf_loe.components.implementation import choose_implementation
from nerf_loe.data.backdrop import over
from nerf_loe.data.extent import box_outside_cameras
from nerf_loe.errors import ConfigError
from nerf_loe.evaluation.complexity import format_complexity
from nerf_loe.fields.radiance_field import RadianceField
from nerf_loe.inspection.grid_view import draw_occupancy
from nerf_loe.inspection.region_map import region_map
from nerf_loe.rendering.marcher import GridMarcher, GridMarcherConfig
from nerf_loe.rendering.rays import ray_aabb_intersect
from nerf_loe.rendering.volume_rendering import last_sample_index

Background = Literal["auto", "last_sample", "white", "black", "random"]


@dataclass
class FieldModelConfig(ModelConfig):
    """What every method shares: colour head, density offset, extent, background, marching."""

    _target: type = field(default_factory=lambda: FieldModel)
    geo_feat_dim: int = 15
    """Feature passed from the trunk to the colour head."""
    color_hidden_dim: int = 64
    color_layers: int = 2
    density_bias: float = -0.3
    """Added to the raw density before exp: empty space starts at density ~exp(density_bias) = 0.74
    per scene-box side. Densities are per box side, so results do not depend on the world's scale
    (nerfstudio-data scales cameras to radius 1). -0.3 is what nerfstudio-data's 2-unit box had
    before (exp(-1) per unit); a procedural object scene, 250 steps, loe-nerf: 19.4 / 20.6 dB (RGBA /
    on white) against 17.6 / 20.4 with 0.1 (blender-data's old 3-unit value)."""
    unbounded: bool | None = False
    """True: scene contraction, 4 grid levels, steps growing with distance (content past the
    cameras); False: the scene box only. None: chosen from the training images, bounded when they
    show an isolated subject (transparent borders or a plain backdrop), else unbounded (see
    :mod:`nerf_loe.data.extent`). Not the default: scenes gain or lose by it. loe-nerf on the CPU,
    nerfstudio-data, 150 s: unbounded 19.95 / 13.90 / 14.28 dB against bounded 17.56 / 13.45 /
    14.91 dB on woodbox / chess2 / wineglass (``extent_loe_150s_unbounded_{true,false}.md``); the
    demo (chess2, blender-data, 1000 steps): unbounded 13.34 dB in 26 min, bounded 21.76 dB in
    3.5 min. Unbounded steps cost 3-4x bounded ones (the grid stays ~95% occupied)."""
    background_color: Background = "auto"
    """Colour behind the last sample. auto: the training images' plain backdrop colour when their
    borders show one (objects on white), else last_sample. last_sample: each ray's last sample
    colour fills the transmittance left (opaque scenes with content beyond the box); a ray the grid
    culls entirely takes the field's colour where it leaves the box. white/black: a constant;
    random: a random colour per ray in training (white at evaluation). Images with an alpha channel
    around an isolated subject (transparent borders) train on a random colour and evaluate on white,
    prediction and target alike; other images with an alpha channel (a transparent sky over an
    opaque scene) are flattened onto white and trained as opaque photos
    (:func:`nerf_loe.data.backdrop.alpha_rule`)."""
    distortion_loss_mult: float = 0.002
    """Weight of mip-NeRF 360's distortion loss (weight spread along rays: fog, floaters); not used
    on data whose alpha marks an isolated subject (trained on random backdrops). A He-initialised
    trunk otherwise keeps fog in the scene box: the occupancy grid stays a third to half occupied
    and steps slow down. loe-nerf, CPU, 300 s, five scenes, against 0: median +0.29 dB, lamppost
    +2.13 (3352 steps against 1163), worst wineglass -0.22
    (results/loe_distortion0002_fivescene_he_init.md); asmr-nerf, lamppost 400 steps: 13.3 samples
    shaded a ray against 48.6, 300 s: lamppost 31.54 dB against 30.24, chess2 21.74 against 21.38
    (results/asmr_{distortion_,}{lamppost,chess2,woodbox}_300s.md). The NID methods, measured
    without it, set 0."""
    frequency_reg_fraction: float = 0.0
    """FreeNeRF's frequency regularisation: the share of --max-num-iterations over which the trunk's
    positional encodings release their frequencies, low to high (FreeNeRF: 0.9, 0.7, 0.5 for 3, 6,
    9 views; 0: off). loe-nerf and its baselines: the position's encoding; asmr-nerf: each level's
    cell-centre encoding and the remainder's."""
    box_outside_cameras: bool = True
    """Bounded models: when training cameras lie inside the data's scene box (nerfstudio-data puts
    the cameras in [-1, 1], its box), use the cube around the cameras' focus point reaching 0.4 of
    the nearest camera's distance. chess2, nerfstudio-data (center-method focus), mlp-nerf, 1000
    steps: 19.7 dB, against 14.0 with the cameras inside. False: keep the data's box."""
    occlusion_reg_mult: float = 0.0
    """FreeNeRF's occlusion regularisation (few views: floaters in front of the cameras): weight of
    the mean density over the first ``occlusion_reg_steps`` marching steps of each ray, from where
    it enters the grid (FreeNeRF: 0.01; 0: off)."""
    occlusion_reg_steps: int = 10
    marcher: GridMarcherConfig = field(default_factory=GridMarcherConfig)
    eval_num_rays_per_chunk: int = 4096

    def make_trunk(self, out_dim: int, metadata: dict) -> nn.Module:
        """The method's trunk: unit-box positions [n, 3] -> [n, out_dim], with ``macs_per_sample()``
        (``metadata``: the training data's, e.g. a collection's scenes)."""
        raise NotImplementedError(f"{type(self).__name__} must say how to build its trunk")

    def __post_init__(self) -> None:
        if self.background_color not in ("auto", "last_sample", "white", "black", "random"):
            raise ConfigError(
                f"--pipeline.model.background-color {self.background_color!r}: "
                "choose auto, last_sample, white, black or random"
            )
        if self.distortion_loss_mult < 0:
            raise ConfigError("--pipeline.model.distortion-loss-mult must be >= 0")
        if self.occlusion_reg_mult < 0 or self.occlusion_reg_steps < 1:
            raise ConfigError("--pipeline.model.occlusion-reg-mult must be >= 0 and occlusion-reg-steps >= 1")
        if self.geo_feat_dim < 1 or self.eval_num_rays_per_chunk < 1:
            raise ConfigError("--pipeline.model.geo-feat-dim and eval-num-rays-per-chunk must be >= 1")
        if not 0.0 <= self.frequency_reg_fraction <= 1.0:
            share = self.frequency_reg_fraction
            raise ConfigError(f"--pipeline.model.frequency-reg-fraction {share}: give a share in [0, 1]")


def surface_points(rays_o: Tensor, rays_d: Tensor, outputs: dict[str, Tensor]) -> Tensor:
    """Each ray's expected surface point (at its expected depth), where render-time maps look."""
    return rays_o + rays_d * outputs["depth"].reshape(-1, 1)


class FieldModel(Model):
    """:class:`~nerf_loe.fields.radiance_field.RadianceField` around the config's trunk, rendered by
    :class:`~nerf_loe.rendering.marcher.GridMarcher`."""

    config: FieldModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.unbounded = self._resolve_extent()
        if not self.unbounded and cfg.box_outside_cameras:
            self._clear_the_cameras()
        aabb = self.scene_box.aabb
        self.field = RadianceField(
            aabb,
            cfg.make_trunk(1 + cfg.geo_feat_dim, self.kwargs.get("metadata") or {}),
            cfg.geo_feat_dim,
            cfg.color_hidden_dim,
            cfg.color_layers,
            density_bias=cfg.density_bias,
            contract=self.unbounded,
            implementation=choose_implementation(self.kwargs.get("device")),
        )
        masked = any(isinstance(m, FrequencyMask) for m in self.field.modules())
        if cfg.frequency_reg_fraction > 0 and not masked:
            raise ConfigError(
                f"--pipeline.model.frequency-reg-fraction: {type(self).__name__}'s trunk has no positional "
                "encoding to release; leave it at 0"
            )
        self.marcher = cfg.marcher.setup(aabb=aabb.flatten(), unbounded=self.unbounded)
        self.background_kind, colour = self._resolve_background()
        self.register_buffer("background_rgb", torch.tensor(colour))
        # Set once the data shows an alpha channel: the background is then the compositing colour,
        # also for ns-eval / ns-render / the viewer after loading a checkpoint.
        self.register_buffer("alpha_data", torch.tensor(False))
        # How the training images' alpha is read; "subject" when the data manager measured nothing.
        self.alpha_rule = (self.kwargs.get("metadata") or {}).get("alpha_rule") or "subject"
        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        self.lpips = OfflineLPIPS(normalize=True)
        CONSOLE.print(format_complexity(type(self).__name__, self.field.complexity()))
        trunk = self.field.trunk
        if hasattr(trunk, "region_ids"):
            levels = trunk.region_levels()
            self.region_level = ViewerSlider(
                f"{trunk.region_name.capitalize()} map: layer",
                default_value=min(1, levels - 1),
                min_value=0,
                max_value=max(levels - 1, 1),
                step=1,
                hint=f"Which layer's {trunk.region_name}s the {trunk.region_name}_map output colours",
            )
        # the occupied cells in the 3-D scene (the control gives the viewer's scene when one runs)
        self.viewer_control = ViewerControl()
        self.show_grid = ViewerCheckbox(
            "Show occupancy grid",
            False,
            cb_hook=lambda _: self.draw_grid(),
            hint="Occupied cells of the marcher's grid as points, coloured by level (redrawn while training)",
        )
        self._grid_cloud = None

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        return {"fields": list(self.field.parameters())}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        def before_step(step: int) -> None:
            with self.field.fixed_weights():
                self.marcher.update_grid(step, self.field.density_at)
            self.refresh_grid_view(step)

        callbacks = [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before_step)]
        masks = [m for m in self.field.trunk.modules() if isinstance(m, FrequencyMask)]
        if masks:  # FreeNeRF's schedule: progress t / T over the configured share T of training
            trainer = training_callback_attributes.trainer
            total = trainer.config.max_num_iterations if trainer is not None else None
            if total is None:
                raise ConfigError("frequency-reg-fraction needs the trainer's --max-num-iterations")
            span = max(self.config.frequency_reg_fraction * total, 1.0)

            def release(step: int) -> None:
                for mask in masks:
                    mask.progress.fill_(step / span)

            callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], release))
        return callbacks

    def viewed_marcher(self) -> GridMarcher:
        """The marcher whose grid the viewer shows."""
        return self.marcher

    def draw_grid(self) -> None:
        """Show (or hide) the viewed grid's occupied cells in the viewer's 3-D scene
        (:mod:`nerf_loe.inspection.grid_view`); nothing without a viewer."""
        server = getattr(self.viewer_control, "viser_server", None)
        if server is None:
            return
        if self._grid_cloud is not None:
            self._grid_cloud.remove()
            self._grid_cloud = None
        if self.show_grid.value:
            self._grid_cloud = draw_occupancy(
                server.scene, self.viewed_marcher().grid, VISER_NERFSTUDIO_SCALE_RATIO
            )

    def refresh_grid_view(self, step: int, every: int = 100) -> None:
        """Redraw the shown grid every ``every`` training steps (it changes as the field trains)."""
        if step % every == 0 and self.show_grid.value:
            self.draw_grid()

    def _clear_the_cameras(self) -> None:
        """Bounded: shrink a scene box that holds training cameras (:func:`box_outside_cameras`)."""
        metadata = self.kwargs.get("metadata") or {}
        positions, directions = metadata.get("camera_positions"), metadata.get("camera_directions")
        if positions is None or directions is None:
            return
        fitted = box_outside_cameras(self.scene_box.aabb.float(), positions.float(), directions.float())
        if fitted is not None:
            self.scene_box = SceneBox(aabb=fitted[0])
            CONSOLE.print(f"scene box: {fitted[1]} (--pipeline.model.box-outside-cameras False keeps it)")

    def _resolve_extent(self) -> bool:
        """Whether to model the scene unbounded (``unbounded=None`` is decided by the data)."""
        if self.config.unbounded is not None:
            return self.config.unbounded
        measured = (self.kwargs.get("metadata") or {}).get("scene_extent")
        if measured is None:
            CONSOLE.print("unbounded auto: the data manager measured no scene extent: bounded")
            return False
        extent, reason = measured
        CONSOLE.print(f"unbounded auto: {reason}: {extent}")
        return extent == "unbounded"

    def _resolve_background(self) -> tuple[Literal["last_sample", "constant", "random"], list[float]]:
        """The background rule and constant colour this model uses (``auto`` decided by the data)."""
        kind = self.config.background_color
        backdrop = (self.kwargs.get("metadata") or {}).get("backdrop")
        if kind == "auto":
            kind = "last_sample" if backdrop is None else "backdrop"
            seen = "no plain backdrop" if backdrop is None else f"a plain backdrop {tuple(backdrop)}"
            CONSOLE.print(f"background-color auto: the training images show {seen}: using {kind}")
        colours = {"black": [0.0] * 3, "backdrop": list(backdrop or [])}
        rule = {"last_sample": "last_sample", "random": "random"}.get(kind, "constant")
        return rule, colours.get(kind, [1.0] * 3)

    def background(
        self, rays_o: Tensor, rays_d: Tensor, ray_indices: Tensor, rgbs: Tensor, marcher: GridMarcher
    ) -> Tensor:
        """Per-ray colour behind the last sample (see ``FieldModelConfig.background_color``)."""
        if bool(self.alpha_data):  # the loss composites on its own colour; renders show white
            return torch.ones_like(rays_o)
        if self.background_kind == "random" and self.training:
            return torch.rand_like(rays_o)
        if self.background_kind != "last_sample":
            return self.background_rgb.expand_as(rays_o)
        last, has = last_sample_index(ray_indices, rays_o.shape[0])
        background = torch.zeros_like(rays_o, dtype=rgbs.dtype)
        background[has] = rgbs[last[has]]
        culled = ~has
        if culled.any():  # no sample left: the field's colour where the ray leaves the box
            far = marcher.far_points(rays_o[culled], rays_d[culled])
            background[culled] = self.field.colors_at(far, rays_d[culled])
        return background

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        rays_o = ray_bundle.origins.reshape(-1, 3)
        rays_d = ray_bundle.directions.reshape(-1, 3)
        return self.render_rays(rays_o, rays_d, ray_bundle.pixel_area.reshape(-1, 1), self.marcher)

    def render_rays(
        self, rays_o: Tensor, rays_d: Tensor, pixel_area: Tensor, marcher: GridMarcher
    ) -> dict[str, Tensor]:
        """Render rays through ``marcher``'s grid with the field: per-ray outputs (and the occlusion
        term in training, the region map when rendering)."""
        with self.field.fixed_weights():  # the pre-pass's windows (and rendering) form them once
            samples = marcher.sample(rays_o, rays_d, self.field.density_at)
            idx = samples.ray_indices
            pixel_area = pixel_area[idx]
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
            outputs = marcher.render(
                samples,
                field_outputs[FieldHeadNames.DENSITY][:, 0],
                field_outputs[FieldHeadNames.RGB],
                self.background(rays_o, rays_d, idx, field_outputs[FieldHeadNames.RGB], marcher),
                with_distortion=self.training
                and self.config.distortion_loss_mult > 0
                and not bool(self.alpha_data),
            )
            if self.training and self.config.occlusion_reg_mult > 0:
                density = field_outputs[FieldHeadNames.DENSITY]
                outputs["occlusion"] = self._near_density(rays_o, rays_d, samples, density, marcher)
            if not self.training and not torch.is_grad_enabled():
                outputs.update(self._region_map(rays_o, rays_d, outputs))
            return outputs

    def _near_density(
        self, rays_o: Tensor, rays_d: Tensor, samples, density: Tensor, marcher: GridMarcher
    ) -> Tensor:
        """FreeNeRF's occlusion term: density summed over the samples within the first
        ``occlusion_reg_steps`` marching steps of each ray (from the grid's entry, or the near plane
        for rays starting inside), divided by rays x steps: the mean over those steps, samples the
        grid skipped counting as empty."""
        entry, _ = ray_aabb_intersect(rays_o, rays_d, marcher.grid.aabbs[-1])
        entry = entry.clamp(min=marcher.config.near_plane)
        steps = self.config.occlusion_reg_steps
        near = (samples.t_starts - entry[samples.ray_indices]) < steps * marcher.step_size
        return density[:, 0][near].sum() / (len(rays_o) * steps)

    def _region_map(self, rays_o: Tensor, rays_d: Tensor, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The trunk's regions (banks, cells) of the viewer's chosen layer at each ray's expected
        surface point, colour-coded (:mod:`nerf_loe.inspection.region_map`); rendering only."""
        if not hasattr(self, "region_level"):
            return {}
        trunk = self.field.trunk
        level = int(min(max(int(self.region_level.value), 0), trunk.region_levels() - 1))
        ids = self.field.region_ids_at(surface_points(rays_o, rays_d, outputs), level)
        return {f"{trunk.region_name}_map": region_map(ids, outputs["accumulation"].reshape(-1, 1))}

    def composite(self, outputs: dict[str, Tensor], image: Tensor) -> tuple[Tensor, Tensor]:
        """Prediction and target on the same background; never blends the target with the model.

        RGB images are the target as they are; so are images with an alpha channel under the
        ``flatten`` rule, flattened onto white. Under the ``subject`` rule they are composited,
        target and prediction alike, on a random colour per pixel in training (so density on
        transparent pixels always costs loss) and on white in evaluation.
        """
        image = image.to(self.device)
        if image.shape[-1] != 4:
            return outputs["rgb"], image
        if self.alpha_rule == "flatten":
            return outputs["rgb"], over(image, torch.ones_like(image[..., :3]))
        if not bool(self.alpha_data):
            self.alpha_data.fill_(True)
        color = torch.rand_like(image[..., :3]) if self.training else torch.ones_like(image[..., :3])
        return outputs["rgb_foreground"] + (1.0 - outputs["accumulation"]) * color, over(image, color)

    def grid_occupancy(self) -> float:
        """Occupied share of the occupancy grid."""
        return self.marcher.grid.occupied_fraction()

    def get_metrics_dict(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pred, target = self.composite(outputs, batch["image"])
        return {
            "psnr": self.psnr(pred, target),
            "num_samples_per_batch": outputs["num_samples_per_ray"].sum(),
            "grid_occupancy": torch.tensor(self.grid_occupancy()),
        }

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        pred, target = self.composite(outputs, batch["image"])
        if "loss_weight" in batch:  # teaching's unbiased re-weighting, per ray
            weight = batch["loss_weight"].to(pred.device)
            losses = {"rgb_loss": ((pred - target).square().mean(dim=-1) * weight).mean()}
        else:
            losses = {"rgb_loss": torch.nn.functional.mse_loss(pred, target)}
        if "occlusion" in outputs:
            losses["occlusion_loss"] = self.config.occlusion_reg_mult * outputs["occlusion"]
        if "distortion" in outputs and not bool(self.alpha_data):
            losses["distortion_loss"] = self.config.distortion_loss_mult * outputs["distortion"].mean()
        return losses

    def get_rgba_image(self, outputs: dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """Colour and accumulation as RGBA (what ``ns-export pointcloud`` filters its points by)."""
        return torch.cat([outputs[output_name], outputs["accumulation"]], dim=-1)

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        rgb, image = self.composite(outputs, batch["image"])
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
