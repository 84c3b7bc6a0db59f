"""Neural Implicit Dictionary, stage 1, through nerfstudio's trainer on a tiny family collection."""

import copy

import pytest
import torch

from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data.procedural import ProceduralSceneConfig


@pytest.fixture(scope="module")
def mugs(tmp_path_factory):
    scene = ProceduralSceneConfig(width=16, height=16, num_views=16, supersample=1, family="mug")
    return make_collection(
        CollectionConfig(num_scenes=3, held_out=1, scene=scene), tmp_path_factory.mktemp("m"), False
    )


def _trainer(collection, tmp_path, steps: int):
    from nerfstudio.configs.method_configs import all_methods

    import nerf_loe.method_configs  # noqa: F401

    config = copy.deepcopy(all_methods["nid-dictionary"])
    config.pipeline.datamanager.dataparser.data = collection
    config.pipeline.datamanager.data = collection
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    model = config.pipeline.model
    model.num_experts, model.top_k, model.hidden_dim, model.num_layers, model.warmup_steps = 8, 2, 32, 2, 20
    model.marcher.grid_resolution = 32
    config.machine.device_type = "cpu"
    config.max_num_iterations = steps
    config.vis = "tensorboard"
    config.output_dir = tmp_path
    config.set_timestamp()
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="val")
    return trainer


def test_a_dictionary_trains_over_a_collection_one_scene_per_batch(mugs, tmp_path):
    from nerf_loe.benchmarks.methods import train_step

    trainer = _trainer(mugs, tmp_path, 120)
    pipeline = trainer.pipeline
    model, datamanager = pipeline.model, pipeline.datamanager
    trunk = model.field.trunk
    assert tuple(trunk.codes.shape) == (2, 8) and len(model.marchers) == 2  # the two training scenes

    _, batch = datamanager.next_train(0)
    scenes = datamanager.train_dataset.cameras.metadata["scene_id"][batch["indices"][:, 0], 0]
    assert len(torch.unique(scenes)) == 1  # one scene per batch

    psnrs = [float(train_step(trainer, step)["psnr"]) for step in range(120)]
    assert sum(psnrs[-10:]) / 10 > sum(psnrs[:10]) / 10 + 3.0, (psnrs[:10], psnrs[-10:])
    assert not bool(trunk.dense)  # past the warm-up: sparse gates
    assert ((trunk.gates() != 0).sum(dim=1) == 2).all()
    assert all(steps > 0 for steps in model.scene_steps)  # both scenes' grids were updated

    # evaluation views of the training scenes carry their scene to the model
    pipeline.eval()
    camera = datamanager.eval_dataset.cameras[
        len(datamanager.eval_dataset) - 1 : len(datamanager.eval_dataset)
    ]
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (16, 16, 3) and (outputs["scene_ids"] == 1).all()
