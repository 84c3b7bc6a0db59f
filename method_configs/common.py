"""The trainer every method of this package uses: data manager, optimiser, schedule, viewer."""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.data.pixel_samplers import PixelSamplerConfig
from nerfstudio.engine.trainer import TrainerConfig

from nerf_loe.data.datamanager import ValidatedDataManagerConfig
from nerf_loe.models.field_model import FieldModelConfig
from nerf_loe.training.optimizers import FusedAdamOptimizerConfig
from nerf_loe.training.pipeline import TeachingPipelineConfig
from nerf_loe.training.schedulers import FloatExponentialDecaySchedulerConfig

_ON_CUDA = torch.cuda.is_available()
MAX_STEPS = 20000


def trainer_config(
    method_name: str,
    model: FieldModelConfig,
    lr: float = 2e-3,
    dataparser: DataParserConfig | None = None,
    pixel_sampler: PixelSamplerConfig | None = None,
    lr_warmup_steps: int = 100,
) -> TrainerConfig:
    """ns-train's config for ``model``: 1024 rays a batch on the CPU (4096 on CUDA), fused Adam at ``lr``
    (or the rate given on the command line) decaying to a 20th of it over MAX_STEPS after a linear
    warm-up of ``lr_warmup_steps``; nerfstudio-data and uniform pixels unless given."""
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_save=1000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if _ON_CUDA else "cpu"),
        pipeline=TeachingPipelineConfig(
            datamanager=ValidatedDataManagerConfig(
                # focus: the origin where the cameras look (the subject), not their centroid, which
                # for a hemisphere of cameras hangs above the subject
                dataparser=dataparser or NerfstudioDataParserConfig(center_method="focus"),
                pixel_sampler=pixel_sampler or PixelSamplerConfig(),
                train_num_rays_per_batch=4096 if _ON_CUDA else 1024,
                eval_num_rays_per_batch=4096 if _ON_CUDA else 1024,
            ),
            model=model,
        ),
        optimizers={
            "fields": {
                "optimizer": FusedAdamOptimizerConfig(lr=lr, eps=1e-15),
                "scheduler": FloatExponentialDecaySchedulerConfig(
                    lr_final_ratio=1 / 20, warmup_steps=lr_warmup_steps, max_steps=MAX_STEPS
                ),
            }
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 14),
        vis="viewer",
    )
