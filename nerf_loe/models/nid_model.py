"""Neural Implicit Dictionary NeRF: stage 1 learns a dictionary of basis fields over a scene
collection (:mod:`nerf_loe.fields.dictionary_trunk`); stage 2 (``fit``) freezes it and solves one
new scene's code and bias, started at the mean of the training codes, typically from few views.

Rays carry their scene (``ray_bundle.metadata["scene_id"]``, from the collection's cameras); each
scene renders through its own occupancy grid, with the dictionary mixed by its own gates. The
gates are dense for ``warmup_steps`` (all experts, plus an L1 and importance-balancing loss), then
each scene keeps its ``top_k`` (plus load- and importance-balancing), as NID trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils import colormaps
from nerfstudio.viewer.viewer_elements import ViewerSlider
from torch import Tensor, nn

from nerf_loe.errors import ConfigError
from nerf_loe.fields.dictionary_trunk import DictionaryTrunk
from nerf_loe.inspection.region_map import region_map
from nerf_loe.models.field_model import FieldModel, FieldModelConfig, surface_points
from nerf_loe.rendering.marcher import GridMarcher


@dataclass
class NIDModelConfig(FieldModelConfig):
    """Neural Implicit Dictionary over a scene collection."""

    _target: type = field(default_factory=lambda: NIDModel)
    num_experts: int = 64
    """E, the dictionary's basis fields."""
    top_k: int = 8
    """Experts each scene keeps after the warm-up."""
    hidden_dim: int = 128
    """Width of the shared trunk."""
    num_layers: int = 3
    """Hidden layers of the shared trunk."""
    num_frequencies: int = 8
    warmup_steps: int = 500
    """Dense gates (every expert) for this many steps, then top-k."""
    balancing_mult: float = 1.0
    """Scale of NID's gate losses (0.01 per term, as the paper's code)."""
    fit: bool = False
    """Stage 2: fit one scene's code and bias with the dictionary frozen (needs ``dictionary``)."""
    dictionary: Path | None = None
    """Stage 2: a stage-1 checkpoint (outputs/.../nid-dictionary/<time>/nerfstudio_models/step-*.ckpt)."""
    residual_dim: int = 0
    """Stage 2: width of a small residual field trained with the code (zero at the start), for what
    the dictionary cannot express; 0: off."""
    residual_penalty_mult: float = 0.01
    """Stage 2: weight of the residual field's mean squared output in the loss (keeps the scene
    close to the dictionary's span)."""
    distortion_loss_mult: float = 0.0
    """mip-NeRF 360's distortion loss: off for the dictionary, measured without it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.top_k <= self.num_experts:
            raise ConfigError(
                f"--pipeline.model.top-k {self.top_k}: give 1 <= top-k <= num-experts ({self.num_experts})"
            )
        if self.warmup_steps < 0 or self.balancing_mult < 0:
            raise ConfigError("--pipeline.model.warmup-steps and balancing-mult must be >= 0")
        if self.residual_dim < 0 or self.residual_penalty_mult < 0:
            raise ConfigError("--pipeline.model.residual-dim and residual-penalty-mult must be >= 0")
        if self.residual_dim > 0 and not self.fit:
            raise ConfigError(
                "--pipeline.model.residual-dim is for fitting a scene (nid-nerf), not a dictionary"
            )
        if self.dictionary is not None:  # absolute in the saved config.yml, for ns-eval and resume
            self.dictionary = Path(self.dictionary).resolve()
            if self.fit and not self.dictionary.is_file():
                raise ConfigError(f"--pipeline.model.dictionary {self.dictionary}: no such checkpoint")

    def make_trunk(self, out_dim: int, metadata: dict) -> nn.Module:
        if self.fit:
            if self.dictionary is None:
                raise ConfigError(
                    "nid-nerf fits a scene with a dictionary: pass --pipeline.model.dictionary <ckpt>"
                )
            num_scenes = 1
        else:
            scenes = metadata.get("scenes")
            if not scenes:
                raise ConfigError(
                    "nid-dictionary trains on a scene collection: pass collection-data --data <collection>"
                )
            num_scenes = len(scenes)
        return DictionaryTrunk(
            num_scenes,
            out_dim,
            self.num_experts,
            self.top_k,
            self.hidden_dim,
            self.num_layers,
            self.num_frequencies,
            metadata.get("family"),
            self.residual_dim,
        )


class NIDModel(FieldModel):
    """One dictionary, one code and one occupancy grid per scene."""

    config: NIDModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        trunk: DictionaryTrunk = self.field.trunk
        num_scenes = len(trunk.codes)
        aabb = self.scene_box.aabb.flatten()
        self.marchers = nn.ModuleList(
            [self.marcher]
            + [self.config.marcher.setup(aabb=aabb, unbounded=self.unbounded) for _ in range(num_scenes - 1)]
        )
        del self.marcher  # one grid per scene instead
        # each grid's own step count (a buffer: a resumed run does not warm the grids up again)
        self.register_buffer("scene_steps", torch.zeros(num_scenes, dtype=torch.long))
        self.trained: set[int] = set()
        self.viewer_scene = ViewerSlider(
            "Scene",
            0,
            0,
            max(num_scenes - 1, 1),
            1,
            cb_hook=lambda _: self.draw_grid(),
            hint="Which scene the viewer shows",
        )
        self.render_top_k = ViewerSlider(
            "Experts kept when rendering (0: as trained)",
            0,
            0,
            self.config.num_experts,
            1,
            cb_hook=lambda slider: setattr(trunk, "render_top_k", int(slider.value)),
            hint="Render with each scene's top-k gates for this k, to see what each expert adds",
        )
        if self.config.fit:
            self._load_dictionary(Path(self.config.dictionary))

    def _load_dictionary(self, path: Path) -> None:
        """Stage 2: the stage-1 field (trunk, experts, colour head) loaded and frozen; this scene's
        code and bias start at the mean of the dictionary's."""
        if not path.is_file():
            raise ConfigError(f"--pipeline.model.dictionary {path}: no such checkpoint")
        state = torch.load(path, map_location="cpu", weights_only=False)["pipeline"]
        prefix = "_model.field."
        loaded = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if "trunk.codes" not in loaded:
            raise ConfigError(f"--pipeline.model.dictionary {path}: not an nid-dictionary checkpoint")
        fresh = {k: v for k, v in self.field.state_dict().items() if k.startswith("trunk.residual.")}
        own = {k: v for k, v in self.field.state_dict().items() if k not in fresh}
        own.pop("trunk._extra_state", None)
        theirs = (loaded.pop("trunk._extra_state", None) or {}).get("family")
        ours = self.field.trunk.family
        if theirs and ours and theirs != ours:
            raise ConfigError(
                f"--pipeline.model.dictionary {path}: a dictionary of the {theirs} family, but this "
                f"scene is a {ours}: fit it with a dictionary learned on {ours}s"
            )
        codes, bias = loaded.pop("trunk.codes"), loaded.pop("trunk.scene_bias")
        for key in sorted(own.keys() - {"trunk.codes", "trunk.scene_bias"}):
            if key not in loaded or loaded[key].shape != own[key].shape:
                theirs = tuple(loaded[key].shape) if key in loaded else "missing"
                raise ConfigError(
                    f"--pipeline.model.dictionary {path}: field.{key} is {theirs} there, "
                    f"{tuple(own[key].shape)} here: use the dictionary's num-experts, hidden-dim, "
                    "num-layers, num-frequencies, geo-feat-dim and colour head"
                )
        start = {"trunk.codes": codes.mean(0, keepdim=True), "trunk.scene_bias": bias.mean(0, keepdim=True)}
        family = {"trunk._extra_state": {"family": theirs or ours}}
        self.field.load_state_dict(loaded | start | fresh | family)
        trunk = self.field.trunk
        for parameter in self.field.parameters():
            parameter.requires_grad_(False)
        for parameter in [trunk.codes, trunk.scene_bias, *(trunk.residual or nn.Sequential()).parameters()]:
            parameter.requires_grad_(True)

    def get_param_groups(self) -> dict[str, list[nn.Parameter]]:
        """All of the field in stage 1; the scene's code and bias (and residual field) in stage 2."""
        return {"fields": [p for p in self.field.parameters() if p.requires_grad]}

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        def before_step(step: int) -> None:
            self.field.trunk.dense.fill_(not self.config.fit and step < self.config.warmup_steps)
            for scene in sorted(self.trained):  # the grids of the scenes the last step trained
                self.scene_steps[scene] += 1
                self.field.trunk.scene = scene
                self.marchers[scene].update_grid(int(self.scene_steps[scene]), self.field.density_at)
            self.trained.clear()
            self.refresh_grid_view(step)

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before_step)]

    def viewed_marcher(self) -> GridMarcher:
        return self.marchers[self.viewed_scene()]

    def viewed_scene(self) -> int:
        """The scene the viewer's slider chooses (clamped to the model's scenes)."""
        return min(max(int(self.viewer_scene.value), 0), len(self.marchers) - 1)

    def scene_ids(self, ray_bundle: RayBundle, n: int) -> Tensor:
        """Each ray's scene: from its camera's metadata, else the viewer's choice."""
        count = len(self.marchers)
        ids = (ray_bundle.metadata or {}).get("scene_id")
        if ids is None:  # a camera path or the viewer: the chosen scene
            return torch.full((n,), self.viewed_scene(), dtype=torch.long, device=self.device)
        ids = ids.reshape(-1).long()
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= count):
            raise ConfigError(
                f"rays of scene {int(ids.max())}, but this model holds {count} scene(s): "
                "train and evaluate on the same collection (nid-nerf fits one scene: use its own data)"
            )
        return ids

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        rays_o = ray_bundle.origins.reshape(-1, 3)
        rays_d = ray_bundle.directions.reshape(-1, 3)
        area = ray_bundle.pixel_area.reshape(-1, 1)
        ids = self.scene_ids(ray_bundle, len(rays_o))
        scenes = torch.unique(ids).tolist()
        if self.training:
            self.trained.update(scenes)
        merged: dict[str, Tensor] = {}
        for scene in scenes:
            rows = ids == scene
            self.field.trunk.scene = scene
            outputs = self.render_rays(rays_o[rows], rays_d[rows], area[rows], self.marchers[scene])
            for key, value in outputs.items():
                if value.dim() == 0:  # a batch mean (the occlusion term): weighted by rays
                    share = value * rows.sum() / len(ids)
                    merged[key] = merged[key] + share if key in merged else share
                    continue
                if key not in merged:
                    merged[key] = value.new_zeros((len(ids), *value.shape[1:]))
                merged[key][rows] = value
        return merged

    def _region_map(self, rays_o: Tensor, rays_d: Tensor, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """At each ray's expected surface point: ``expert_map``, the expert contributing most there
        (colours as :mod:`nerf_loe.inspection.region_map`), and ``gate_energy``, that expert's share
        of the contributions' energy (:meth:`DictionaryTrunk.expert_energy`) on the turbo colormap
        from 0 (blue) to 1 (red): 1 where one expert explains the point, 1/k where k share it
        evenly. Black where the ray is mostly transparent."""
        accumulation = outputs["accumulation"].reshape(-1, 1)
        trunk: DictionaryTrunk = self.field.trunk
        energy = trunk.expert_energy(self.field.normalizer(surface_points(rays_o, rays_d, outputs)))
        share = energy.max(-1, keepdim=True).values / energy.sum(-1, keepdim=True).clamp(min=1e-12)
        turbo = colormaps.apply_colormap(share, colormaps.ColormapOptions(colormap="turbo", normalize=False))
        return {
            "expert_map": region_map(energy.argmax(-1), accumulation),
            "gate_energy": torch.where(accumulation >= 0.5, turbo, torch.zeros_like(turbo)),
        }

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.config.balancing_mult > 0:  # over every scene: one-scene batches could balance nothing
            losses["gate_loss"] = self.config.balancing_mult * self.field.trunk.balancing_loss()
        if self.field.trunk.residual is not None and self.config.residual_penalty_mult > 0:
            losses["residual_loss"] = self.config.residual_penalty_mult * self.field.trunk.residual_energy
        return losses

    def grid_occupancy(self) -> float:
        """Mean occupied share of the scenes' grids."""
        return sum(m.grid.occupied_fraction() for m in self.marchers) / len(self.marchers)
