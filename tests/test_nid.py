"""Neural Implicit Dictionary, stage 1, through nerfstudio's trainer on a tiny family collection."""

import copy

import pytest
import torch

from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data.procedural import ProceduralSceneConfig, generate_procedural


@pytest.fixture(scope="module")
def mugs(tmp_path_factory):
    scene = ProceduralSceneConfig(width=16, height=16, num_views=16, supersample=1, family="mug")
    return make_collection(
        CollectionConfig(num_scenes=3, held_out=1, scene=scene), tmp_path_factory.mktemp("m"), False
    )


def _trainer_config(collection, tmp_path, steps: int):
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
    return config


def _trainer(collection, tmp_path, steps: int):
    config = _trainer_config(collection, tmp_path, steps)
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
    assert (
        model.scene_steps > 0
    ).all() and "scene_steps" in model.state_dict()  # both grids, kept in checkpoints
    pipeline.get_eval_loss_dict(120)  # eval batches: one scene each too

    # evaluation views of the training scenes carry their scene to the model
    pipeline.eval()
    camera = datamanager.eval_dataset.cameras[
        len(datamanager.eval_dataset) - 1 : len(datamanager.eval_dataset)
    ]
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (16, 16, 3) and "scene_ids" not in outputs
    assert (model.scene_ids(camera.generate_rays(0), 256) == 1).all()


def _fitter(scene_dir, tmp_path, dictionary, **model_options):
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    config = copy.deepcopy(all_methods["nid-nerf"])
    config.pipeline.datamanager.dataparser = BlenderDataParserConfig(data=scene_dir)
    config.pipeline.datamanager.data = scene_dir
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    model = config.pipeline.model
    model.num_experts, model.top_k, model.hidden_dim, model.num_layers = 8, 2, 32, 2
    model.marcher.grid_resolution = 32
    model.dictionary = dictionary
    for key, value in model_options.items():
        setattr(model, key, value)
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.output_dir = tmp_path
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="val")
    return trainer


def test_fitting_a_new_scene_trains_only_its_code_and_bias(mugs, tmp_path):
    from nerf_loe.benchmarks.methods import train_step
    from nerf_loe.errors import ConfigError
    from nerf_loe.models.nid_model import NIDModelConfig

    stage1 = _trainer(mugs, tmp_path / "dict", 30)
    for step in range(30):
        train_step(stage1, step)
    stage1.save_checkpoint(29)
    checkpoint = next((stage1.checkpoint_dir).glob("step-*.ckpt"))
    dictionary = stage1.pipeline.model.field

    fitter = _fitter(mugs / "scene_002", tmp_path / "fit", checkpoint)
    model = fitter.pipeline.model
    trainable = {name for name, p in model.field.named_parameters() if p.requires_grad}
    assert trainable == {"trunk.codes", "trunk.scene_bias"}
    assert [id(p) for p in model.get_param_groups()["fields"]] == [
        id(model.field.trunk.codes),
        id(model.field.trunk.scene_bias),
    ]
    assert torch.allclose(model.field.trunk.codes[0], dictionary.trunk.codes.mean(0))  # the mean code
    frozen = {
        k: v.clone()
        for k, v in model.field.state_dict().items()
        if "codes" not in k and "scene_bias" not in k and isinstance(v, torch.Tensor)
    }
    assert torch.equal(frozen["trunk.head.weight"], dictionary.trunk.head.weight.detach())
    start = model.field.trunk.codes.detach().clone()
    for step in range(5):
        train_step(fitter, step)
    assert not torch.equal(model.field.trunk.codes.detach(), start)
    assert all(torch.equal(v, model.field.state_dict()[k]) for k, v in frozen.items())

    with pytest.raises(
        ConfigError, match=r"field.trunk.head.weight is \(8, 16, 32\) there, \(8, 16, 24\) here"
    ):
        _fitter(mugs / "scene_002", tmp_path / "bad", checkpoint, hidden_dim=24)
    with pytest.raises(ConfigError, match="no such checkpoint"):
        _fitter(mugs / "scene_002", tmp_path / "none", tmp_path / "missing.ckpt")

    # the optional residual field: zero at the start, trained with the code, penalised
    with_residual = _fitter(mugs / "scene_002", tmp_path / "residual", checkpoint, residual_dim=8)
    residual_model = with_residual.pipeline.model
    trainable = {name for name, p in residual_model.field.named_parameters() if p.requires_grad}
    assert trainable == {"trunk.codes", "trunk.scene_bias"} | {
        f"trunk.residual.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")
    }
    points = torch.rand(64, 3)
    with torch.no_grad():
        plain = _fitter(mugs / "scene_002", tmp_path / "plain", checkpoint).pipeline.model.field.trunk(points)
        assert torch.equal(residual_model.field.trunk(points), plain)
    for step in range(5):
        train_step(with_residual, step)
    assert float(residual_model.field.trunk.residual[-1].weight.abs().sum()) > 0
    ray_bundle, batch = with_residual.pipeline.datamanager.next_train(5)
    outputs = residual_model(ray_bundle)
    assert float(residual_model.get_loss_dict(outputs, batch)["residual_loss"]) > 0
    with pytest.raises(ConfigError, match="residual-dim is for fitting a scene"):
        NIDModelConfig(residual_dim=8)

    # the family travels in the checkpoint; a scene of another family is refused in one line
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]
    assert state["_model.field.trunk._extra_state"] == {"family": "mug"}
    assert model.field.trunk.family == "mug"
    chair = ProceduralSceneConfig(width=16, height=16, num_views=16, supersample=1, family="chair")
    chair_dir = generate_procedural(chair, tmp_path / "chair", show_progress=False)
    with pytest.raises(ConfigError, match="a dictionary of the mug family, but this scene is a chair"):
        _fitter(chair_dir, tmp_path / "other", checkpoint)
    # checkpoints from before the family was kept load, with the family unknown
    older = {k: v for k, v in dictionary.state_dict().items() if not k.endswith("_extra_state")}
    dictionary.load_state_dict(older)
    assert dictionary.trunk.family is None


def _train_and_save_parameters(local_rank: int, world_size: int, config, global_rank: int = 0) -> None:
    """nerfstudio's train_loop (seeded per rank, as it is), then each replica's parameters saved."""
    torch.manual_seed(config.machine.seed + global_rank)  # replicas start apart: DDP must join them
    trainer = config.setup(local_rank=local_rank, world_size=world_size)
    trainer.setup(test_mode="val")
    model = trainer.pipeline.model

    def parameters() -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    start = parameters()
    trainer.train()
    teaching = trainer.pipeline.datamanager.teaching
    taught = None if teaching is None else teaching.errors
    torch.save(
        {"start": start, "end": parameters(), "taught": taught}, config.output_dir / f"rank{global_rank}.pt"
    )


@pytest.mark.slow
@pytest.mark.parametrize("teaching", [False, True])
def test_two_cpu_processes_train_one_dictionary(mugs, tmp_path, teaching):
    """nerfstudio's multi-device launch with gloo on 2 CPU processes (its worker and DDP made to run
    on the CPU by nerf_loe.compat.distributed): each replica trains on its own batches and scenes,
    and after the steps every parameter agrees across the replicas and has moved from its start.
    With teaching, each replica chose its rays from its own candidates (its own error memory)."""
    from nerfstudio.scripts.train import launch

    from nerf_loe.compat import install
    from nerf_loe.data.teaching_sampler import UNSEEN

    config = _trainer_config(mugs, tmp_path, steps=6)
    config.pipeline.datamanager.teaching.enabled = teaching
    config.machine.num_devices = 2
    config.max_num_iterations = 6
    install()  # as the final ns-train config's construction does
    launch(_train_and_save_parameters, 2, device_type="cpu", config=config)
    runs = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    start, end = runs[0]["start"], [run["end"] for run in runs]
    assert end[0].keys() == end[1].keys() and len(end[0]) > 0
    for name, value in end[0].items():
        torch.testing.assert_close(end[1][name], value, rtol=0, atol=1e-6, msg=name)
    moved = [name for name, value in start.items() if not torch.allclose(value, end[0][name])]
    assert "field.trunk.codes" in moved and len(moved) > len(start) // 2, moved
    if teaching:
        seen = [run["taught"] < UNSEEN for run in runs]
        assert all(s.any() for s in seen) and not torch.equal(seen[0], seen[1])


def test_ns_train_installs_the_cpu_worker_when_it_builds_its_config():
    """In a fresh interpreter, ns-train's own import order: nerfstudio's training module loads this
    plugin before it defines its worker; building the parsed config installs ours."""
    import subprocess
    import sys

    code = (
        "import nerfstudio.scripts.train as t, tyro\n"
        "from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion\n"
        "from nerf_loe.compat.distributed import cpu_capable_worker\n"
        "before = t._distributed_worker is cpu_capable_worker\n"
        "tyro.cli(AnnotatedBaseConfigUnion, args=['loe-nerf', '--machine.num-devices', '2'])\n"
        "print(before, t._distributed_worker is cpu_capable_worker)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "True"], out.stdout[-500:]


def test_teaching_keeps_one_scene_per_batch_and_scores_through_the_dictionary(mugs, tmp_path):
    """Error-driven selection on a collection: batches stay within one scene, the pool is scored by
    a no-grad render through that scene's gates, and the error buffer fills."""
    from nerf_loe.benchmarks.methods import train_step
    from nerf_loe.data.teaching_sampler import UNSEEN, TeachingPixelSampler

    config = _trainer_config(mugs, tmp_path, 10)
    config.pipeline.datamanager.teaching.enabled = True
    config.pipeline.datamanager.teaching.scoring = "forward"
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="val")
    datamanager = trainer.pipeline.datamanager
    sampler = datamanager.train_pixel_sampler
    assert isinstance(sampler, TeachingPixelSampler) and sampler.one_scene_per_batch
    scene_of = datamanager.train_dataset.cameras.metadata["scene_id"][:, 0]
    for step in range(6):
        train_step(trainer, step)
        _, batch = datamanager.next_train(step)
        assert len(torch.unique(scene_of[batch["indices"][:, 0]])) == 1
    assert int((sampler.errors < UNSEEN).sum()) > 0
    assert len(sampler._kept_by_scene) == 2  # both training scenes were taught
