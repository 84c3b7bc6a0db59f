"""FreeNeRF's regularisers: the frequency mask against FreeNeRF's channel rule, its schedule in
training, and the occlusion term against a per-ray loop."""

import math
from types import SimpleNamespace

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackLocation
from nerfstudio.field_components.encodings import NeRFEncoding

from nerf_loe.components.frequency_mask import FrequencyMask, freenerf_visibility
from nerf_loe.errors import ConfigError
from nerf_loe.models.asmr_model import ASMRModelConfig
from nerf_loe.models.field_model import FieldModelConfig
from nerf_loe.models.loe_model import LoEModelConfig


def _freenerf_channel_mask(num_frequencies: int, progress: float) -> torch.Tensor:
    """FreeNeRF's channel rule on the paper's low-to-high layout [x, sin f0, cos f0, sin f1, ...]
    (3 axes each; the official code applies it to [x, sin f0..fF, cos f0..fF], see the module)."""
    length = 3 + 3 * 2 * num_frequencies
    mask = torch.zeros(length)
    if progress >= 1:
        return torch.ones(length)
    ptr = min(length / 3 * progress + 1, length / 3)  # as get_freq_reg_mask
    mask[: 3 * int(ptr)] = 1.0
    mask[3 * int(ptr) : 3 * int(ptr) + 3] = ptr - int(ptr)
    return mask


@pytest.mark.parametrize("progress", [0.0, 0.13, 0.5, 0.77, 0.999, 1.0])
def test_mask_follows_freenerfs_channel_rule_on_nerfstudios_layout(progress):
    frequencies = 4
    encoding = NeRFEncoding(3, frequencies, min_freq_exp=0, max_freq_exp=frequencies - 1, include_input=True)
    mask = FrequencyMask(3, frequencies)
    mask.progress.fill_(progress)
    x = torch.rand(5, 3)
    got = mask(encoding(x))
    # the same encoding written in FreeNeRF's layout, masked by its rule
    columns = [x]
    for k in range(frequencies):
        columns += [torch.sin(2 * math.pi * 2**k * x), torch.cos(2 * math.pi * 2**k * x)]
    freenerf = torch.cat(columns, dim=-1) * _freenerf_channel_mask(frequencies, progress)
    # nerfstudio's channels: sin (axis-major), cos (axis-major), input
    sin = freenerf[:, 3:].reshape(5, frequencies, 2, 3)[:, :, 0].transpose(1, 2).reshape(5, -1)
    cos = freenerf[:, 3:].reshape(5, frequencies, 2, 3)[:, :, 1].transpose(1, 2).reshape(5, -1)
    assert torch.allclose(got, torch.cat([sin, cos, freenerf[:, :3]], dim=-1), atol=1e-5)


def test_visibility_examples():
    assert freenerf_visibility(5, 0.0).tolist() == [1, 0, 0, 0, 0]
    assert freenerf_visibility(5, 1.0).tolist() == [1] * 5
    assert freenerf_visibility(17, 0.5).sum() == pytest.approx(17 * 0.5 + 1)


def _model(config_class=LoEModelConfig, **options):
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    sizes = {"banks": ("2x2x2", "2x2x2")} if config_class is LoEModelConfig else {"bases": ("2x2x2", "2x2x2")}
    config = config_class(hidden_dim=8, **sizes, **options)
    return config.setup(scene_box=box, num_train_data=1, metadata={})


@pytest.mark.parametrize(("config_class", "encodings"), [(LoEModelConfig, 1), (ASMRModelConfig, 3)])
def test_frequencies_are_released_over_the_configured_share_of_training(config_class, encodings):
    """Every mask of the trunk (loe-nerf: its encoding; asmr-nerf: two levels' and the remainder's)
    follows t / T, T the share of --max-num-iterations."""
    model = _model(config_class, frequency_reg_fraction=0.5)
    trainer = SimpleNamespace(config=SimpleNamespace(max_num_iterations=200))
    callbacks = model.get_training_callbacks(SimpleNamespace(trainer=trainer, grad_scaler=None))
    masks = {name: m for name, m in model.named_modules() if isinstance(m, FrequencyMask)}
    assert len(masks) == encodings
    for step, want in [(0, 0.0), (50, 0.5), (100, 1.0), (150, 1.5)]:
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        assert [float(m.progress) for m in masks.values()] == pytest.approx([want] * encodings)
    for name in masks:  # checkpoints keep the schedule
        assert f"{name}.progress" in model.state_dict()
    assert not any(isinstance(m, FrequencyMask) for m in _model(config_class).modules())  # off by default
    with pytest.raises(ConfigError, match="frequency-reg-fraction 1.5"):
        config_class(frequency_reg_fraction=1.5)


def test_frequency_release_is_refused_where_there_is_no_encoding():
    with pytest.raises(ConfigError, match="needs --pipeline.model.backbone relu"):
        ASMRModelConfig(backbone="siren", frequency_reg_fraction=0.5)
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    config = FieldModelConfig(frequency_reg_fraction=0.5)
    config.make_trunk = lambda out_dim, metadata: torch.nn.Linear(3, out_dim)  # a trunk without one
    with pytest.raises(ConfigError, match="has no positional encoding to release"):
        config.setup(scene_box=box, num_train_data=1, metadata={})


def test_occlusion_term_is_the_mean_density_of_each_rays_first_steps():
    model = _model(occlusion_reg_mult=0.01, occlusion_reg_steps=5, density_bias=1.0)
    model.marcher.grid.binaries.fill_(True)
    n = 6
    origins = torch.tensor([[0.0, 0.0, 3.0]]).expand(n, 3) + torch.randn(n, 3) * 0.1
    directions = torch.nn.functional.normalize(
        torch.tensor([0.0, 0.0, -1.0]) + torch.randn(n, 3) * 0.05, dim=-1
    )
    rays = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(n, 1), camera_indices=None)
    model.marcher.config.early_stop = "none"
    outputs = model.get_outputs(rays)
    step = model.marcher.step_size
    samples = model.marcher.sample(origins, directions)  # (a new stratified draw: recompute both)
    density = model.field.density_at(samples.positions(origins, directions))[:, None]
    got = model._near_density(origins, directions, samples, density, model.marcher)
    total = 0.0
    for r in range(n):  # slow reference: where ray r enters [-1, 1]^3, then its first 5 steps
        o, d = origins[r].tolist(), directions[r].tolist()
        enter = max(min((-1 - o[i]) / d[i], (1 - o[i]) / d[i]) for i in range(3))
        for j in torch.nonzero(samples.ray_indices == r)[:, 0].tolist():
            if float(samples.t_starts[j]) - enter < 5 * step:
                total += float(density[j, 0])
    assert float(got) == pytest.approx(total / (n * 5), rel=1e-4) and total > 0
    losses = model.get_loss_dict(outputs, {"image": torch.zeros(n, 3)})
    assert float(losses["occlusion_loss"]) == pytest.approx(0.01 * float(outputs["occlusion"]))
    model.eval()
    assert "occlusion" not in model.get_outputs(rays)
