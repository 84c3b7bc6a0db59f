"""Pixel batches from one scene at a time, for models trained over a scene collection: each batch
renders through a single scene's occupancy grid and mixes a single scene's experts (one collapsed
matrix), the cheap case of the dictionary model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from torch import Tensor

from nerf_loe.errors import ConfigError


@dataclass
class SceneBatchPixelSamplerConfig(PixelSamplerConfig):
    _target: type = field(default_factory=lambda: SceneBatchPixelSampler)


class SceneBatchPixelSampler(PixelSampler):
    """Each batch: one scene drawn uniformly, then pixels uniformly over that scene's images.

    ``image_scene`` (the scene of every training image, by dataset index) is set by the data
    manager from the cameras' ``scene_id`` metadata."""

    one_scene_per_batch = True

    def __init__(self, config: SceneBatchPixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.image_scene: Int[Tensor, " images"] | None = None
        self._local_scene: Int[Tensor, " b"] | None = None

    def sample(self, image_batch: dict) -> dict:
        if self.image_scene is None:
            raise ConfigError(
                "one-scene batches need a scene collection (--data <collection> collection-data)"
            )
        self._local_scene = self.image_scene[image_batch["image_idx"].cpu()]
        return super().sample(image_batch)

    def sample_method(
        self,
        batch_size: int,
        num_images: int,
        image_height: int,
        image_width: int,
        mask: Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> Int[Tensor, "batch_size 3"]:
        if mask is not None:
            raise ConfigError("one-scene batches do not support masks")
        assert self._local_scene is not None
        scenes = torch.unique(self._local_scene)
        scene = scenes[torch.randint(len(scenes), ())]
        images = torch.nonzero(self._local_scene == scene)[:, 0]
        pick = images[torch.randint(len(images), (batch_size,))]
        y = torch.randint(image_height, (batch_size,))
        x = torch.randint(image_width, (batch_size,))
        return torch.stack([pick, y, x], dim=-1).to(device)
