"""nerfstudio's VanillaDataManager with the dataset validated before anything is read, what the
training images and cameras show measured for the model (``metadata["backdrop"]``,
``["alpha_rule"]``, ``["scene_extent"]``, ``["camera_positions"]``, ``["camera_directions"]``,
``["family"]``), and optional
error-driven ray selection (``teaching``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from torch import Tensor

from nerf_loe.data.backdrop import alpha_rule, over, plain_backdrop, sampled_borders
from nerf_loe.data.extent import scene_extent
from nerf_loe.data.formats import dataset_family
from nerf_loe.data.teaching_sampler import TeachingConfig, TeachingPixelSampler
from nerf_loe.data.validation import validate_dataset
from nerf_loe.errors import ConfigError


@dataclass
class ValidatedDataManagerConfig(VanillaDataManagerConfig):
    """A VanillaDataManager that validates its data first (one-line errors on bad input)."""

    _target: type = field(default_factory=lambda: ValidatedDataManager)
    teaching: TeachingConfig = field(default_factory=TeachingConfig)
    """Implicit Neural Teaching: train on the rays with the largest current error
    (:mod:`nerf_loe.data.teaching_sampler`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for option in ("train_num_rays_per_batch", "eval_num_rays_per_batch", "patch_size"):
            if getattr(self, option) < 1:
                flag = "--pipeline.datamanager." + option.replace("_", "-")
                raise ConfigError(f"{flag} {getattr(self, option)}: give at least 1")


class ValidatedDataManager(VanillaDataManager[InputDataset]):
    """Validates ``config.dataparser``'s data, then behaves exactly like VanillaDataManager; the
    training dataset's metadata (which the pipeline passes to the model) gains ``backdrop``, the
    plain backdrop colour of its images or None, ``alpha_rule``, how to train on their alpha channel
    (both :mod:`nerf_loe.data.backdrop`), ``scene_extent``, the extent and its reason
    (:mod:`nerf_loe.data.extent`), and the training cameras' positions and viewing directions."""

    def __init__(
        self,
        config: ValidatedDataManagerConfig,
        device: torch.device | str = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ) -> None:
        if config.data is not None:  # `ns-train <method> --data X`: VanillaDataManager's rule, applied
            config.dataparser.data = Path(config.data)  # before the check reads the dataparser's data
        validate_dataset(config.dataparser, test_mode)
        super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        dataset = self.train_dataset
        borders = sampled_borders(dataset.get_image_float32, len(dataset))
        rule = dataset.metadata["alpha_rule"] = alpha_rule(borders)
        if rule == "flatten":  # measured as the model will see them
            borders = over(borders, torch.ones(3))
        dataset.metadata["backdrop"] = plain_backdrop(borders)
        dataset.metadata["scene_extent"] = scene_extent(dataset.metadata["backdrop"], rule == "subject")
        poses = dataset.cameras.camera_to_worlds.detach().cpu()
        dataset.metadata["camera_positions"] = poses[:, :3, 3]
        dataset.metadata["camera_directions"] = -poses[:, :3, 2]  # nerfstudio cameras look down -z
        if "family" not in dataset.metadata:  # a collection's dataparser names it already
            dataset.metadata["family"] = dataset_family(config.dataparser.data)
        self.teaching: TeachingPixelSampler | None = None
        if config.teaching.enabled and self.train_pixel_sampler is not None:
            if config.patch_size > 1:
                raise ConfigError(
                    "--pipeline.datamanager.teaching.enabled needs --pipeline.datamanager.patch-size 1"
                )
            base = self.train_pixel_sampler
            self.teaching = TeachingPixelSampler(
                base.config,
                config.teaching,
                num_images=len(dataset),
                seed=config.teaching.seed + local_rank,
                one_scene_per_batch=getattr(base, "one_scene_per_batch", False),
                **base.kwargs,
            )
            self.train_pixel_sampler = self.teaching
        self.total_steps: int | None = None
        for sampler, data in (
            (self.train_pixel_sampler, dataset),
            (self.eval_pixel_sampler, self.eval_dataset),
        ):
            if getattr(sampler, "one_scene_per_batch", False):  # collections
                metadata = data.cameras.metadata or {}
                if "scene_id" not in metadata:
                    raise ConfigError(
                        "this method trains on a scene collection: pass collection-data --data <collection>"
                    )
                sampler.image_scene = metadata["scene_id"][:, 0].cpu()

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        if attributes.trainer is not None:  # the span of the teaching schedules
            self.total_steps = attributes.trainer.config.max_num_iterations
        return super().get_training_callbacks(attributes)

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        """nerfstudio's next batch; with teaching, chosen by error and with ``loss_weight`` per ray."""
        if self.teaching is not None:
            self.teaching.set_step(step, self.total_steps)
        ray_bundle, batch = super().next_train(step)
        if self.teaching is not None and self.teaching.last_weights is not None:
            batch["loss_weight"] = self.teaching.last_weights
        return ray_bundle, batch

    def record_errors(self, batch: dict, errors: Tensor) -> None:
        """The L1 colour errors of a training batch's rays, for teaching (no-op without it)."""
        if self.teaching is not None:
            self.teaching.record(batch["indices"], errors)
