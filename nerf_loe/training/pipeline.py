"""The pipeline of every method here: nerfstudio's VanillaPipeline, telling the data manager each
training ray's colour error so that error-driven selection (teaching) can use it, and runnable on
several processes (VanillaPipeline's steps expect a distributed sampler its data manager never
makes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch import Tensor

from nerf_loe.compat.distributed import patch_nerfstudio_distributed


@dataclass
class TeachingPipelineConfig(VanillaPipelineConfig):
    _target: type = field(default_factory=lambda: TeachingPipeline)

    def __post_init__(self) -> None:
        # the final (parsed) config is built once nerfstudio's training module has loaded
        patch_nerfstudio_distributed()


def ray_errors(model, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """Per-ray L1 colour error, summed over channels (INT's score), as the model scores its
    prediction (RGBA targets composited on the model's background)."""
    with torch.no_grad():
        if hasattr(model, "composite"):
            pred, target = model.composite(outputs, batch["image"])
        else:
            pred, target = outputs["rgb"], batch["image"][..., :3].to(outputs["rgb"].device)
        return (pred - target).abs().sum(dim=-1)


class TeachingPipeline(VanillaPipeline):
    """VanillaPipeline whose training step also records each ray's error with the data manager, and
    which scores candidate rays for ``teaching.scoring=forward``."""

    def __init__(self, config: TeachingPipelineConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        sampler = getattr(self.datamanager, "teaching", None)
        if sampler is not None and sampler.teaching.scoring == "forward":
            sampler.scorer = self.score_pixels

    def score_pixels(self, image_batch: dict, indices: Tensor) -> Tensor:
        """Fresh L1 errors of training pixels (``indices``: image, row, column in ``image_batch``'s
        numbering), from a render without gradients, as the training pass would score them."""
        image = image_batch["image"]
        at_image = indices.to(image.device)
        batch = {"image": image[at_image[:, 0], at_image[:, 1], at_image[:, 2]]}
        cameras = image_batch["image_idx"].to(indices.device)[indices[:, 0]]
        ray_bundle = self.datamanager.train_ray_generator(
            torch.stack([cameras, indices[:, 1], indices[:, 2]], -1)
        )
        with torch.no_grad():
            outputs = self.model(ray_bundle)
        return ray_errors(self.model, outputs, batch)

    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        model_outputs = self._model(ray_bundle)  # the DDP-wrapped model on several devices
        metrics_dict = self.model.get_metrics_dict(model_outputs, batch)
        loss_dict = self.model.get_loss_dict(model_outputs, batch, metrics_dict)
        record = getattr(self.datamanager, "record_errors", None)
        if record is not None and getattr(self.datamanager, "teaching", None) is not None:
            record(batch, ray_errors(self.model, model_outputs, batch))
        return model_outputs, loss_dict, metrics_dict

    def get_eval_loss_dict(self, step: int):
        """VanillaPipeline's, without its distributed sampler's epoch (evaluation runs on the main
        process only)."""
        self.eval()
        ray_bundle, batch = self.datamanager.next_eval(step)
        model_outputs = self.model(ray_bundle)
        metrics_dict = self.model.get_metrics_dict(model_outputs, batch)
        loss_dict = self.model.get_loss_dict(model_outputs, batch, metrics_dict)
        self.train()
        return model_outputs, loss_dict, metrics_dict
