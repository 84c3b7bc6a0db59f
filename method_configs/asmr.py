"""``asmr-nerf``: the ASMR trunk in the shared radiance field and renderer."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from nerf_loe.method_configs.common import trainer_config
from nerf_loe.models.asmr_model import ASMRModelConfig

asmr_nerf = MethodSpecification(
    # SIREN backbones diverge at loe-nerf's 2e-3 (a procedural scene: 13.1 dB after 200 steps,
    # against 18.5 dB at 5e-4)
    config=trainer_config("asmr-nerf", ASMRModelConfig(), lr=5e-4),
    description="ASMR NeRF: multi-resolution SIREN with activation sharing at render time (nerf_loe).",
)
