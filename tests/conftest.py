"""Shared fixtures (tiny generated scenes, no downloads) and the ``cuda`` marker's skip rule."""

from pathlib import Path

import pytest
import torch

from nerf_loe.data.procedural import ProceduralSceneConfig, generate_procedural

#: The tiny scene's generator settings (tests that compare with its true surfaces rebuild them).
TINY_SCENE = ProceduralSceneConfig(seed=3, num_objects=3, width=32, height=32, num_views=24, supersample=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run where a CUDA device is present and are skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (its CPU twin runs)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """A 32x32, 24-view procedural scene in Blender + nerfstudio formats."""
    return generate_procedural(TINY_SCENE, tmp_path_factory.mktemp("tiny_scene"), show_progress=False)


@pytest.fixture(scope="session")
def trained_run(tiny_scene, tmp_path_factory) -> Path:
    """The config of loe-nerf trained 400 steps on the tiny scene through ``ns-train``, its banks
    released at step 200, shared by the tests that only read a trained run (exports, renders, the
    viewer)."""
    from test_end_to_end import release_banks_at, train

    out = tmp_path_factory.mktemp("trained_run")
    train("loe-nerf", tiny_scene, out, "run", 400, options=release_banks_at(200))
    return out / "unnamed" / "loe-nerf" / "run" / "config.yml"
