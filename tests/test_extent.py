"""Bounded or unbounded chosen from the data (``--pipeline.model.unbounded None``).

Documented rule (nerf_loe.data.extent): images with transparent borders or a plain backdrop show
an isolated subject -> bounded; any other images -> unbounded. Checked end to end on procedural
scenes: objects on white and on transparency (bounded), and objects on a ground plane running to a
sky (an open scene, whose content runs far past the cameras: unbounded).
"""

from dataclasses import replace

import pytest
import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

from nerf_loe.data.datamanager import ValidatedDataManagerConfig
from nerf_loe.data.extent import scene_extent
from nerf_loe.data.procedural import GROUND_HALF_SIZE, ProceduralSceneConfig, generate_procedural
from nerf_loe.method_configs.loe import loe_nerf
from nerf_loe.rendering.marcher import GridMarcherConfig


def _scene(tmp_path_factory, **kwargs):
    config = ProceduralSceneConfig(
        seed=1, num_objects=3, width=24, height=24, num_views=8, supersample=1, **kwargs
    )
    return generate_procedural(config, tmp_path_factory.mktemp("scene"), show_progress=False), config


def _model_on(scene, unbounded=None, **overrides):
    """The model ``ns-train loe-nerf --pipeline.model.unbounded None`` builds on ``scene`` (made small)."""
    datamanager = ValidatedDataManagerConfig(dataparser=NerfstudioDataParserConfig(data=scene)).setup(
        device="cpu", test_mode="test"
    )
    dataset = datamanager.train_dataset
    shipped = loe_nerf.config.pipeline.model
    config = replace(shipped, banks=("2x2x2",), hidden_dim=8, unbounded=unbounded, **overrides)
    model = config.setup(
        scene_box=dataset.scene_box, num_train_data=len(dataset), metadata=dataset.metadata, device="cpu"
    )
    return datamanager, model


@pytest.mark.parametrize("background", ["white", "transparent"])
def test_an_isolated_subject_is_modelled_bounded(tmp_path_factory, background):
    scene, _ = _scene(tmp_path_factory, background=background)
    datamanager, model = _model_on(scene)
    assert datamanager.train_dataset.metadata["scene_extent"][0] == "bounded"
    assert model.unbounded is False
    assert model.marcher.grid.levels == 1 and model.marcher.config.cone_angle == 0.0
    assert model.field.normalizer.contraction is None


def test_an_open_scene_is_modelled_unbounded(tmp_path_factory):
    scene, config = _scene(tmp_path_factory, background="sky", ground=True)
    assert GROUND_HALF_SIZE > 5 * config.radius  # the ground runs far past the cameras
    datamanager, model = _model_on(scene)
    assert datamanager.train_dataset.metadata["scene_extent"][0] == "unbounded"
    assert model.unbounded is True
    marcher = model.marcher.config
    assert model.marcher.grid.levels == 4 and marcher.cone_angle == pytest.approx(1 / 256)
    assert marcher.alpha_thre == 0.01
    assert model.field.normalizer.contraction is not None
    far = torch.tensor([[30.0, 0.0, 0.0]])  # contracted into the box: the field sees it
    assert model.field.normalizer.inside(far).item() == 1.0


def test_an_explicit_choice_overrides_the_data(tmp_path_factory):
    scene, _ = _scene(tmp_path_factory, background="sky", ground=True)
    _, model = _model_on(scene, unbounded=False)
    assert model.unbounded is False and model.marcher.grid.levels == 1


def test_the_unbounded_preset_keeps_what_the_user_set(tmp_path_factory):
    scene, _ = _scene(tmp_path_factory, background="sky", ground=True)
    _, model = _model_on(scene, marcher=GridMarcherConfig(grid_levels=2, alpha_thre=0.0, cone_angle=0.01))
    config = model.marcher.config
    assert (model.marcher.grid.levels, config.cone_angle, config.alpha_thre) == (2, 0.01, 0.0)
    _, model = _model_on(scene, marcher=GridMarcherConfig(grid_levels=2))
    config = model.marcher.config
    assert (model.marcher.grid.levels, config.cone_angle, config.alpha_thre) == (2, 1 / 256, 0.01)


@pytest.mark.parametrize(
    ("background", "ground", "rule"),
    [("white", False, None), ("transparent", False, "subject"), ("transparent", True, "flatten")],
)
def test_the_alpha_rule_follows_the_borders(tmp_path_factory, background, ground, rule):
    """A transparent sky over a ground running past the cameras (POV-Ray's open scenes) is a hole in
    an opaque scene: flattened onto white; transparency around an object isolates a subject."""
    scene, _ = _scene(tmp_path_factory, background=background, ground=ground)
    datamanager, model = _model_on(scene, unbounded=False)
    assert datamanager.train_dataset.metadata["alpha_rule"] == rule
    assert model.alpha_rule == (rule or "subject")
    if rule == "flatten":  # measured on the flattened images: sky white, ground textured
        assert datamanager.train_dataset.metadata["backdrop"] is None
        assert datamanager.train_dataset.metadata["scene_extent"][0] == "unbounded"


def test_extent_rule_by_case():
    assert scene_extent(None, transparent_borders=True)[0] == "bounded"
    assert scene_extent((1.0, 1.0, 1.0), transparent_borders=False)[0] == "bounded"
    assert scene_extent(None, transparent_borders=False)[0] == "unbounded"
