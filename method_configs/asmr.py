"""``asmr-nerf``: the ASMR trunk in the shared radiance field and renderer."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from nerf_loe.method_configs.common import trainer_config
from nerf_loe.models.asmr_model import ASMRModelConfig

asmr_nerf = MethodSpecification(
    # the ReLU backbone trains at loe-nerf's 2e-3; a SIREN backbone (--pipeline.model.backbone siren)
    # diverges there and needs 5e-4 (a procedural scene: 13.1 dB after 200 steps against 18.5 dB)
    config=trainer_config("asmr-nerf", ASMRModelConfig(), lr=2e-3),
    description="ASMR NeRF: multi-resolution network sharing activations at render time (nerf_loe).",
)
