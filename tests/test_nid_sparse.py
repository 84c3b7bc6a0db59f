"""NID's reason to exist: a dictionary learned over a family fits a new scene of it from 3 views
better than the same field learned from those 3 views alone, in the same number of steps."""

import json
import os

import pytest
import torch
from test_nid import _fitter, _trainer_config

from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data.procedural import ProceduralSceneConfig
from nerf_loe.data.sparse import make_sparse

DICTIONARY_STEPS, FIT_STEPS = 600, 150


def _train(trainer, steps: int) -> float:
    """``steps`` iterations, then the mean test-view PSNR."""
    from nerf_loe.benchmarks.methods import train_step

    for step in range(steps):
        train_step(trainer, step)
    trainer.pipeline.eval()
    with torch.no_grad():
        psnr = float(trainer.pipeline.get_average_eval_image_metrics(step=steps)["psnr"])
    trainer.pipeline.train()
    return psnr


def _one_scene_collection(scene_dir, out_dir, family: str):
    """A collection holding only ``scene_dir`` (linked): the dictionary's field trained from scratch."""
    out_dir.mkdir(parents=True)
    os.symlink(scene_dir.resolve(), out_dir / "scene")
    index = {"scenes": ["scene"], "train": ["scene"], "held_out": [], "family": family}
    (out_dir / "index.json").write_text(json.dumps(index))
    return out_dir


@pytest.mark.slow
def test_a_frozen_dictionary_fits_a_three_view_scene_better_than_scratch(tmp_path):
    scene = ProceduralSceneConfig(width=24, height=24, num_views=24, supersample=1, family="mug")
    mugs = make_collection(CollectionConfig(num_scenes=7, held_out=1, scene=scene), tmp_path / "mugs", False)
    three_views = make_sparse(mugs / "scene_006", tmp_path / "three", 3)

    torch.manual_seed(0)
    stage1 = _trainer_config(mugs, tmp_path / "dict", DICTIONARY_STEPS).setup(local_rank=0, world_size=1)
    stage1.setup(test_mode="val")
    _train(stage1, DICTIONARY_STEPS)
    stage1.save_checkpoint(DICTIONARY_STEPS - 1)
    checkpoint = next(stage1.checkpoint_dir.glob("step-*.ckpt"))

    torch.manual_seed(0)
    fitted = _train(_fitter(three_views, tmp_path / "fit", checkpoint), FIT_STEPS)

    alone = _one_scene_collection(three_views, tmp_path / "alone", "mug")
    torch.manual_seed(0)
    scratch = _trainer_config(alone, tmp_path / "scratch", FIT_STEPS).setup(local_rank=0, world_size=1)
    scratch.setup(test_mode="val")
    assert len(scratch.pipeline.datamanager.train_dataset) == 3  # the same three views
    from_scratch = _train(scratch, FIT_STEPS)

    assert fitted > from_scratch + 1.0, (fitted, from_scratch)
