"""nerfstudio's VanillaDataManager with the dataset validated before anything is read, and what the
training images show measured for the model: ``metadata["backdrop"]`` and
``metadata["scene_extent"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset

from nerf_loe.data.backdrop import plain_backdrop, sampled_borders, transparent_borders
from nerf_loe.data.extent import scene_extent
from nerf_loe.data.validation import validate_dataset


@dataclass
class ValidatedDataManagerConfig(VanillaDataManagerConfig):
    """A VanillaDataManager that validates its data first (one-line errors on bad input)."""

    _target: type = field(default_factory=lambda: ValidatedDataManager)


class ValidatedDataManager(VanillaDataManager[InputDataset]):
    """Validates ``config.dataparser``'s data, then behaves exactly like VanillaDataManager; the
    training dataset's metadata (which the pipeline passes to the model) gains ``backdrop``, the
    plain backdrop colour of its images or None (:mod:`nerf_loe.data.backdrop`), and
    ``scene_extent``, the extent and its reason (:mod:`nerf_loe.data.extent`)."""

    def __init__(
        self,
        config: ValidatedDataManagerConfig,
        device: torch.device | str = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ) -> None:
        validate_dataset(config.dataparser, test_mode)
        super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        dataset = self.train_dataset
        borders = sampled_borders(dataset.get_image_float32, len(dataset))
        dataset.metadata["backdrop"] = plain_backdrop(borders)
        dataset.metadata["scene_extent"] = scene_extent(
            dataset.metadata["backdrop"], transparent_borders(borders)
        )
