"""Shared fixtures: tiny generated scenes (no downloads)."""

from pathlib import Path

import pytest

from nerf_loe.data.procedural import ProceduralSceneConfig, generate_procedural


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """A 32x32, 24-view procedural scene in Blender + nerfstudio formats."""
    config = ProceduralSceneConfig(seed=3, num_objects=3, width=32, height=32, num_views=24, supersample=1)
    return generate_procedural(config, tmp_path_factory.mktemp("tiny_scene"), show_progress=False)
