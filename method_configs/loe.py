"""``loe-nerf`` and its equal-MAC baselines ``mlp-nerf`` and ``partition-nerf``.

All three share the model, field and renderer; only the tiling differs, so MACs per sample are
equal: LoE (hierarchical banks 2x2x2 then 4x4x4), PE-MLP (one bank per layer) and Partition
(a non-repeating 4x4x4 grid of regions, each owning a full small network).
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from nerf_loe.data.datamanager import ValidatedDataManagerConfig
from nerf_loe.models.loe_model import LoEModelConfig
from nerf_loe.training.schedulers import FloatExponentialDecaySchedulerConfig

_ON_CUDA = torch.cuda.is_available()
MAX_STEPS = 20000


def _trainer(method_name: str, model: LoEModelConfig) -> TrainerConfig:
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_save=1000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if _ON_CUDA else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=ValidatedDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096 if _ON_CUDA else 1024,
                eval_num_rays_per_batch=4096 if _ON_CUDA else 1024,
            ),
            model=model,
        ),
        optimizers={
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
                "scheduler": FloatExponentialDecaySchedulerConfig(
                    lr_final=1e-4, warmup_steps=100, max_steps=MAX_STEPS
                ),
            }
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 14),
        vis="viewer",
    )


loe_nerf = MethodSpecification(
    config=_trainer("loe-nerf", LoEModelConfig()),
    description="Levels-of-Experts NeRF: MLP layers with position-tiled weight banks (nerf_loe).",
)

mlp_nerf = MethodSpecification(
    config=_trainer("mlp-nerf", LoEModelConfig(banks=("1x1x1",) * 4)),
    description="PE-MLP baseline of loe-nerf: same network, one bank per layer, equal MACs (nerf_loe).",
)

partition_nerf = MethodSpecification(
    config=_trainer("partition-nerf", LoEModelConfig(banks=("4x4x4",) * 4, tiling="partition")),
    description="Partition baseline of loe-nerf: a 4x4x4 grid of small networks, equal MACs (nerf_loe).",
)
