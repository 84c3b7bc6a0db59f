"""``asmr-nerf``: the ASMR trunk in the shared radiance field and renderer."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from nerf_loe.method_configs.common import trainer_config
from nerf_loe.models.asmr_model import ASMRModelConfig

asmr_nerf = MethodSpecification(
    # the ReLU backbone trains at loe-nerf's and mlp-nerf's rate: at 1000 steps 4e-3 against 2e-3 gives
    # chess2 22.07/21.71 dB, lamppost 32.41/30.50, woodbox 24.14/23.47 (8e-3: chess2 22.02;
    # results/training_profile_*_cpu_asmr_lr*.md). A SIREN backbone (--pipeline.model.backbone
    # siren) diverges at 2e-3 already and needs 5e-4 (a procedural scene: 13.1 dB after 200 steps
    # against 18.5 dB)
    config=trainer_config("asmr-nerf", ASMRModelConfig(), lr=4e-3),
    description="ASMR NeRF: multi-resolution network sharing activations at render time (nerf_loe).",
)
