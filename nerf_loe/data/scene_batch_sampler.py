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


def check_scene_batches(image_scene: Tensor | None, masked: bool) -> Tensor:
    """``image_scene`` where one-scene batches can be drawn, else the error that says why not."""
    if image_scene is None:
        raise ConfigError("one-scene batches need a scene collection (--data <collection> collection-data)")
    if masked:
        raise ConfigError("one-scene batches do not support masks")
    return image_scene


def draw_scene(
    image_scene: Int[Tensor, " images"], generator: torch.Generator | None = None
) -> tuple[int, Int[Tensor, " k"]]:
    """One of the scenes present in ``image_scene`` (the scene of each image), drawn uniformly,
    and the positions of its images."""
    scenes = torch.unique(image_scene)
    scene = int(scenes[torch.randint(len(scenes), (), generator=generator)])
    return scene, torch.nonzero(image_scene == scene)[:, 0]


def pixels_of(
    images: Int[Tensor, " k"], n: int, height: int, width: int, generator: torch.Generator | None = None
) -> Int[Tensor, "n 3"]:
    """``n`` pixels drawn uniformly over ``images`` (each ``height`` x ``width``), as (image, row, column)."""
    pick = images[torch.randint(len(images), (n,), generator=generator)]
    y = torch.randint(height, (n,), generator=generator)
    x = torch.randint(width, (n,), generator=generator)
    return torch.stack([pick, y, x], dim=-1)


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
        image_scene = check_scene_batches(self.image_scene, "mask" in image_batch)
        self._local_scene = image_scene[image_batch["image_idx"].cpu()]
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
        assert self._local_scene is not None and mask is None  # checked in sample
        _, images = draw_scene(self._local_scene)
        return pixels_of(images, batch_size, image_height, image_width).to(device)
