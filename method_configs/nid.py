"""``nid-dictionary``: stage 1 of the Neural Implicit Dictionary, over a scene collection."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from nerf_loe.data.collection_dataparser import CollectionDataParserConfig
from nerf_loe.data.scene_batch_sampler import SceneBatchPixelSamplerConfig
from nerf_loe.method_configs.common import trainer_config
from nerf_loe.models.nid_model import NIDModelConfig

nid_dictionary = MethodSpecification(
    config=trainer_config(
        "nid-dictionary",
        NIDModelConfig(),
        dataparser=CollectionDataParserConfig(),
        pixel_sampler=SceneBatchPixelSamplerConfig(),
    ),
    description="Neural Implicit Dictionary, stage 1: basis fields over a scene collection (nerf_loe).",
)

nid_nerf = MethodSpecification(
    # CodeNeRF fits a code with lr 1e-2 in about 200 steps
    config=trainer_config("nid-nerf", NIDModelConfig(fit=True, warmup_steps=0, balancing_mult=0.0), lr=1e-2),
    description="Neural Implicit Dictionary, stage 2: a scene's code, the dictionary frozen (nerf_loe).",
)
