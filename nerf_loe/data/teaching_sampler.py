"""Implicit Neural Teaching for ray batches: train on the rays the model currently gets most wrong.

Scoring every training ray each step, as INT does for images, would cost a render of the whole
training set. Two cheaper scores (``scoring``): ``memory`` remembers each ray's error, as the
pipeline records the L1 colour error of every ray it trains on (:meth:`TeachingPixelSampler.record`),
so scoring is free, and rays never trained on score above all others (exploration first);
``forward`` scores each candidate pool afresh with a no-gradient render of its rays (INT's rule,
on the pool instead of the whole set), through the ``scorer`` the pipeline installs.

At a selection step (every step with the ``dense`` strategy; INT's ``incremental`` strategy spaces
them out later in training and reuses the kept rays in between) the sampler draws a uniform pool
of ``pool_factor`` times the batch's teaching share and keeps the ``ratio`` of it with the largest
errors, ``ratio`` following INT's schedule (with the published ``step`` schedule 0.2 rising to
0.92, so late in training the choice is nearly uniform). Each batch takes its teaching share from
the kept rays and the rest, ``uniform_share``, uniformly from all rays, so no ray starves. With
``reweight`` each ray's loss is weighted by the inverse of its expected count in a batch
(:func:`~nerf_loe.data.teaching_selection.teaching_weights`, ranks as they were at the selection):
the expected loss is then the uniform one (Soft Mining's correction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from torch import Tensor

from nerf_loe.data.scene_batch_sampler import check_scene_batches, draw_scene, pixels_of
from nerf_loe.data.teaching_selection import teaching_weights, top_of_pool
from nerf_loe.errors import ConfigError
from nerf_loe.training.teaching_schedule import (
    RatioSchedule,
    Strategy,
    reselects,
    selection_count,
    teaching_ratio,
)

#: Score of a ray never trained on: above any L1 error of an RGB colour in [0, 1] (at most 3).
UNSEEN = 4.0

Scoring = Literal["memory", "forward"]
#: fresh L1 errors of pixels (image batch, indices in its numbering): the pipeline's no-grad render
Scorer = Callable[[dict, Int[Tensor, "m 3"]], Float[Tensor, " m"]]


@dataclass
class TeachingConfig:
    """Error-driven ray selection (Implicit Neural Teaching); off by default."""

    enabled: bool = False
    """Choose training rays by their current error instead of uniformly."""
    ratio_schedule: RatioSchedule = "step"
    """Share of each candidate pool kept: constant, linear, step (INT's default) or cosine."""
    ratio_start: float = 0.2
    """The schedule's starting share (INT's 0.2)."""
    ratio_stages: int = 10
    """Stages of the step schedule (INT's 10)."""
    strategy: Strategy = "dense"
    """When to choose again: dense (every step) or incremental (INT: every step for the first
    quarter of training, then every 10 ... 50 steps, the kept rays reused in between)."""
    total_steps: int | None = None
    """Steps the schedules span; None: the trainer's --max-num-iterations."""
    pool_factor: int = 5
    """The pool holds this many times the batch's teaching share of rays (5: at INT's starting
    ratio 0.2 the kept rays number the teaching share, so few are drawn twice)."""
    uniform_share: float = 0.25
    """Share of every batch drawn uniformly from all rays."""
    reweight: bool = False
    """Weight each ray's loss by its inverse expected count in a batch (an unbiased loss)."""
    seed: int = 0
    """Seed of the selection's own random choices (plus the process rank on multiple devices)."""
    scoring: Scoring = "memory"
    """memory: each ray's error from its last training pass (free); forward: each pool rendered
    without gradients when choosing (fresh errors, a no-grad render of the pool per selection)."""

    def __post_init__(self) -> None:
        option = "--pipeline.datamanager.teaching"
        if not 0.0 < self.ratio_start <= 1.0:
            raise ConfigError(f"{option}.ratio-start {self.ratio_start}: give a share in (0, 1]")
        if not 0.0 <= self.uniform_share < 1.0:
            raise ConfigError(f"{option}.uniform-share {self.uniform_share}: give a share in [0, 1)")
        if self.pool_factor < 1 or self.ratio_stages < 1:
            raise ConfigError(f"{option}.pool-factor and {option}.ratio-stages must be >= 1")
        if self.total_steps is not None and self.total_steps < 1:
            raise ConfigError(f"{option}.total-steps must be >= 1")
        teaching_ratio(self.ratio_schedule, 0, 1, self.ratio_start, self.ratio_stages)  # names the choices
        reselects(self.strategy, 0, 1)
        if self.scoring not in ("memory", "forward"):
            raise ConfigError(f"{option}.scoring {self.scoring!r}: choose memory or forward")


class TeachingPixelSampler(PixelSampler):
    """nerfstudio's pixel sampler choosing rays by their recorded error (see the module docstring).

    Args:
        config: the data manager's pixel sampler config (masks, rejection sampling).
        teaching: the selection's options.
        num_images: training images (the error buffer's first axis).
        seed: seed of the selection's own generator.

    The data manager calls :meth:`set_step` before sampling; the pipeline calls :meth:`record` after
    the training forward pass and, for ``forward`` scoring, sets :attr:`scorer`. ``last_weights``
    holds the last batch's loss weights (ones unless ``reweight``).

    With ``one_scene_per_batch`` (a scene collection's data manager, replacing its
    :class:`~nerf_loe.data.scene_batch_sampler.SceneBatchPixelSampler`) each batch first draws one
    scene uniformly, then pool and uniform share come from that scene's images only; the kept rays
    are remembered per scene. The data manager sets ``image_scene``.
    """

    def __init__(
        self,
        config: PixelSamplerConfig,
        teaching: TeachingConfig,
        num_images: int,
        seed: int = 0,
        one_scene_per_batch: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(config, **kwargs)
        self.one_scene_per_batch = one_scene_per_batch
        self.image_scene: Int[Tensor, " images"] | None = None
        self._scene, self._scene_images = 0, None  # this batch's scene and its images (local numbering)
        self._kept_by_scene: dict[int, Tensor] = {}
        self.teaching = teaching
        self.num_images = num_images
        self.generator = torch.Generator().manual_seed(seed)
        self.errors: Float[Tensor, "images h w"] | None = None
        self.step, self.total_steps = 0, teaching.total_steps or 1
        self.image_idx: Int[Tensor, " b"] | None = None
        self.kept: Int[Tensor, "k 3"] | None = None
        self.last_weights: Float[Tensor, " n"] | None = None
        self.scorer: Scorer | None = None
        self._image_batch: dict = {}
        self._selection: dict = {}

    def set_step(self, step: int, total_steps: int | None = None) -> None:
        """The training step, and the steps the schedules span unless the config fixes them."""
        self.step = step
        self.total_steps = self.teaching.total_steps or total_steps or self.total_steps

    def record(self, indices: Int[Tensor, "n 3"], errors: Float[Tensor, " n"]) -> None:
        """Remember the L1 colour errors of trained rays (``indices``: dataset image, row, column)."""
        if self.errors is not None:
            c, y, x = indices.long().cpu().unbind(-1)
            self.errors[c, y, x] = errors.detach().float().cpu()

    def sample(self, image_batch: dict) -> dict:
        if isinstance(image_batch["image"], list):
            raise ConfigError("--pipeline.datamanager.teaching.enabled needs training images of one size")
        self.image_idx = image_batch["image_idx"].cpu()
        self._image_batch = image_batch
        if self.one_scene_per_batch:
            image_scene = check_scene_batches(self.image_scene, "mask" in image_batch)
            self._scene, self._scene_images = draw_scene(image_scene[self.image_idx], self.generator)
            self.kept = self._kept_by_scene.get(self._scene)
        if self.errors is None:
            height, width = image_batch["image"].shape[1:3]
            # distinct scores, so the pool's top and every ray's rank are well defined
            jitter = 1e-3 * torch.rand((self.num_images, height, width), generator=self.generator)
            self.errors = UNSEEN + jitter
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
        """The teaching share from the kept rays, the rest uniform (both within ``mask``), indices in
        the image batch's numbering as nerfstudio's samplers give them."""
        shape = (num_images, image_height, image_width)
        uniform = round(batch_size * self.teaching.uniform_share)
        taught = batch_size - uniform
        if self.kept is None or reselects(self.teaching.strategy, self.step, self.total_steps):
            self._select(taught, shape, mask, device)
        assert self.kept is not None
        pick = torch.randint(len(self.kept), (taught,), generator=self.generator)
        rest = self._uniform(uniform, shape, mask, device)
        indices = torch.cat([self.kept[pick.to(self.kept.device)], rest])
        if self.teaching.reweight:
            self.last_weights = self._weights(indices.cpu(), uniform, taught).float()
        else:
            self.last_weights = torch.ones(batch_size)
        return indices

    def _uniform(
        self, n: int, shape: tuple[int, int, int], mask: Tensor | None, device
    ) -> Int[Tensor, "n 3"]:
        """``n`` pixels drawn uniformly: over every image (within ``mask``), or over the batch's scene."""
        if self._scene_images is None:
            return super().sample_method(n, *shape, mask=mask, device=device)
        return pixels_of(self._scene_images, n, shape[1], shape[2], self.generator).to(device)

    def _scores(self, local: Int[Tensor, "m 3"]) -> Float[Tensor, " m"]:
        assert self.errors is not None and self.image_idx is not None
        return self.errors[self.image_idx[local[:, 0]], local[:, 1], local[:, 2]]

    def _select(self, taught: int, shape: tuple[int, int, int], mask: Tensor | None, device) -> None:
        """Draw a pool and keep the share of it with the largest recorded errors."""
        ratio = teaching_ratio(
            self.teaching.ratio_schedule,
            self.step,
            self.total_steps,
            self.teaching.ratio_start,
            self.teaching.ratio_stages,
        )
        pool = self.teaching.pool_factor * max(taught, 1)
        candidates = self._uniform(pool, shape, mask, device)
        keep = selection_count(ratio, pool)
        if self.teaching.scoring == "forward":
            if self.scorer is None:
                raise ConfigError("teaching.scoring forward needs the pipeline's scorer (TeachingPipeline)")
            assert self.errors is not None and self.image_idx is not None
            c, y, x = candidates.cpu().unbind(-1)
            self.errors[self.image_idx[c], y, x] = self.scorer(self._image_batch, candidates).float().cpu()
        self.kept = candidates[top_of_pool(self._scores(candidates.cpu()), keep, self.generator).to(device)]
        if self.one_scene_per_batch:
            self._kept_by_scene[self._scene] = self.kept
        if self.teaching.reweight:  # the scores the ranks refer to, as they are now
            assert self.errors is not None and self.image_idx is not None
            scores = self.errors[self.image_idx].clone()
            if mask is not None:
                population = scores[mask[..., 0].cpu().bool()]
            else:  # every pixel the draws could reach (the batch's scene's, with one-scene batches)
                reachable = scores if self._scene_images is None else scores[self._scene_images]
                population = reachable.reshape(-1)
            self._selection = {
                "scores": scores,
                "descending": torch.sort(population, descending=True).values,
                "pool": pool,
                "keep": keep,
            }

    def _weights(self, local: Int[Tensor, "m 3"], uniform: int, taught: int) -> Float[Tensor, " m"]:
        """Inverse expected counts, normalised to the batch, from the ranks at the last selection."""
        chosen = self._selection
        scores = chosen["scores"][local[:, 0], local[:, 1], local[:, 2]]
        rank = torch.searchsorted(-chosen["descending"], -scores, side="left")  # rays scoring higher
        n = len(chosen["descending"])
        return teaching_weights(rank, n, chosen["pool"], chosen["keep"], uniform, taught)
