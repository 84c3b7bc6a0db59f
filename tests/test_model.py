"""LoE model behaviour that the end-to-end runs cannot isolate: backgrounds, compositing, robustness."""

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerf_loe.data.datamanager import ValidatedDataManagerConfig
from nerf_loe.errors import ConfigError
from nerf_loe.method_configs.asmr import asmr_nerf
from nerf_loe.method_configs.loe import loe_nerf, mlp_nerf, partition_nerf
from nerf_loe.method_configs.nid import nid_dictionary, nid_nerf
from nerf_loe.models.loe_model import LoEModelConfig


def _model(background="white", metadata=None, **kwargs):
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    config = LoEModelConfig(banks=("2x2x2", "2x2x2"), hidden_dim=16, background_color=background, **kwargs)
    return config.setup(scene_box=box, num_train_data=1, metadata=metadata or {})


def _rays(n: int) -> RayBundle:
    origins = torch.tensor([[0.0, 0.0, 3.0]]).expand(n, 3)
    jitter = torch.randn(n, 3) * 0.1
    directions = torch.nn.functional.normalize(jitter + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(n, 1), camera_indices=None)


def test_fully_culled_batch_renders_background_and_backpropagates():
    """A batch whose rays all land in free cells trains on (zero gradients) instead of crashing."""
    model = _model()
    model.marcher.grid.binaries.zero_()
    outputs = model.get_outputs(_rays(8))
    torch.testing.assert_close(outputs["rgb"], torch.ones(8, 3))  # the configured background
    loss = (outputs["rgb"] - 0.5).square().mean()
    loss.backward()
    grads = [p.grad for p in model.field.parameters() if p.grad is not None]
    assert grads and all(g.abs().max() == 0 for g in grads)


def test_occupied_batch_gets_nonzero_gradients():
    model = _model()
    outputs = model.get_outputs(_rays(8))
    (outputs["rgb"] - 0.5).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.field.trunk.parameters())


def test_diverged_density_stays_finite():
    """A trunk whose density output has run away gives capped, finite densities and gradients."""
    model = _model()
    with torch.no_grad():
        model.field.trunk.mlp.output.bias[0] = 1e4
    density = model.field.density_at(torch.zeros(4, 3))
    assert torch.isfinite(density).all() and density.max() <= torch.exp(torch.tensor(15.0))
    outputs = model.get_outputs(_rays(8))
    outputs["rgb"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.field.parameters() if p.grad is not None)


def test_culled_ray_renders_the_fields_colour_at_the_box_exit():
    """last_sample with no samples left (grid empty): the colour is the field's colour where the ray
    leaves the box, not black, and the loss trains it."""
    model = _model("last_sample")
    model.marcher.grid.binaries.zero_()
    bundle = _rays(8)
    outputs = model.get_outputs(bundle)
    origins, directions = bundle.origins, bundle.directions
    t_exit = (-1.0 - origins[:, 2]) / directions[:, 2]  # every ray leaves through the face z = -1
    exit_points = origins + t_exit[:, None] * directions
    assert (exit_points[:, :2].abs() < 1).all()
    torch.testing.assert_close(outputs["rgb"], model.field.colors_at(exit_points, directions))
    assert torch.equal(outputs["accumulation"], torch.zeros(8, 1))
    (outputs["rgb"] - 1.0).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.field.color_head.parameters())


def test_transparent_pixels_cost_loss_for_any_density():
    """RGBA: a prediction of uniform colour and arbitrary accumulation on a transparent pixel is
    composited on the same random colour as the target, so it cannot match it for free; the
    target never depends on the prediction."""
    model = _model("auto").train()
    n = 512
    acc = torch.full((n, 1), 0.7, requires_grad=True)
    uniform = torch.tensor([0.2, 0.5, 0.9])
    outputs = {"rgb": torch.zeros(n, 3), "rgb_foreground": acc * uniform, "accumulation": acc}
    image = torch.cat([uniform.expand(n, 3), torch.zeros(n, 1)], dim=-1)  # fully transparent pixels
    loss = model.get_loss_dict(outputs, {"image": image})["rgb_loss"]
    # E[(0.7 (u - c))^2] over c ~ U[0, 1]^3: 0.49 * mean_k((u_k - 1/2)^2 + 1/12)
    expected = 0.49 * ((uniform - 0.5).square() + 1 / 12).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=0.15)
    pred, target = model.composite(outputs, image)
    assert not target.requires_grad and pred.requires_grad
    assert bool(model.alpha_data)
    model.eval()  # evaluation composites both on white
    pred, target = model.composite(outputs, image)
    torch.testing.assert_close(target, torch.ones(n, 3))
    torch.testing.assert_close(pred, 0.7 * uniform + 0.3 * torch.ones(n, 3))


def test_rgb_images_are_the_target_as_they_are():
    model = _model("auto").train()
    outputs = {"rgb": torch.rand(4, 3), "rgb_foreground": torch.rand(4, 3), "accumulation": torch.rand(4, 1)}
    image = torch.rand(4, 3)
    pred, target = model.composite(outputs, image)
    assert pred is outputs["rgb"] and torch.equal(target, image) and not bool(model.alpha_data)


@pytest.mark.parametrize("training", [True, False])
def test_flattened_alpha_trains_as_an_opaque_photo_on_white(training):
    """The flatten rule (a transparent sky over an opaque scene): the target is the image over
    white, the prediction the rendered colour over the model's own background, as for RGB."""
    model = _model("auto", metadata={"alpha_rule": "flatten"}).train(training)
    outputs = {"rgb": torch.rand(3, 3), "rgb_foreground": torch.rand(3, 3), "accumulation": torch.rand(3, 1)}
    image = torch.tensor([[0.2, 0.4, 0.6, 0.0], [0.2, 0.4, 0.6, 1.0], [0.2, 0.4, 0.6, 0.5]])
    pred, target = model.composite(outputs, image)
    assert pred is outputs["rgb"] and not bool(model.alpha_data)
    torch.testing.assert_close(target, torch.tensor([[1.0, 1.0, 1.0], [0.2, 0.4, 0.6], [0.6, 0.7, 0.8]]))


def test_last_sample_background_is_each_rays_last_sample_colour():
    model = _model("last_sample")
    ray_indices = torch.tensor([0, 0, 0, 2, 2])
    rgbs = torch.rand(5, 3)
    origins, directions = (
        torch.tensor([[0.0, 0.0, 3.0]]).expand(3, 3),
        torch.tensor([[0.0, 0.0, -1.0]]).expand(3, 3),
    )
    background = model.background(origins, directions, ray_indices, rgbs, model.marcher)
    torch.testing.assert_close(background[0], rgbs[2])
    torch.testing.assert_close(background[2], rgbs[4])
    far = torch.tensor([[0.0, 0.0, -1.0]])  # ray 1 has no sample: the field's colour at its exit
    torch.testing.assert_close(background[1], model.field.colors_at(far, directions[:1])[0])


def test_auto_background_follows_the_datas_backdrop():
    """auto: the backdrop the data manager measured becomes the constant; none measured: last_sample."""
    plain = _model("auto", metadata={"backdrop": (0.2, 0.3, 0.4)})
    plain.marcher.grid.binaries.zero_()
    torch.testing.assert_close(
        plain.get_outputs(_rays(4))["rgb"], torch.tensor([[0.2, 0.3, 0.4]]).expand(4, 3)
    )
    assert _model("auto").background_kind == "last_sample"
    assert _model("white", metadata={"backdrop": (0.2, 0.3, 0.4)}).background_kind == "constant"


def test_distortion_loss_enters_the_loss_only_when_asked():
    assert "distortion" not in _model("white", distortion_loss_mult=0.0).train().get_outputs(_rays(8))
    model = _model("white", distortion_loss_mult=0.01).train()
    outputs = model.get_outputs(_rays(8))
    losses = model.get_loss_dict(outputs, {"image": torch.ones(8, 3)})
    assert losses["distortion_loss"].item() == pytest.approx(0.01 * outputs["distortion"].mean().item())
    assert outputs["distortion"].min() >= 0 and outputs["distortion"].max() > 0


def test_color_head_macs_come_from_the_layer_configuration():
    """(15 features + 16 SH) -> 64 -> 3 for two layers; one more 64 x 64 for three."""
    assert _model().field.complexity()["color_head"][0] == 31 * 64 + 64 * 3
    assert _model(color_layers=3).field.complexity()["color_head"][0] == 31 * 64 + 64 * 64 + 64 * 3


def test_unknown_background_is_a_config_error():
    with pytest.raises(ConfigError, match="background-color"):
        LoEModelConfig(background_color="learned")


def test_unknown_initialisation_is_a_config_error():
    with pytest.raises(ConfigError, match="init 'xavier'"):
        LoEModelConfig(init="xavier")


def test_modulated_banks_without_residual_banks_are_a_config_error():
    with pytest.raises(
        ConfigError, match="residual-form modulated needs --pipeline.model.residual-banks True"
    ):
        LoEModelConfig(residual_form="modulated")
    with pytest.raises(ConfigError, match="residual-form 'diagonal'"):
        LoEModelConfig(residual_banks=True, residual_form="diagonal")


def test_negative_residual_penalty_is_a_config_error():
    # without the check it silently trains with no penalty (penalised needs a positive weight)
    with pytest.raises(ConfigError, match="residual-penalty-mult must be >= 0"):
        LoEModelConfig(residual_banks=True, residual_penalty_mult=-1.0)


def test_empty_ray_batches_are_config_errors():
    # without the checks: a reshape error deep in torch at the first step, or at evaluation
    with pytest.raises(ConfigError, match="eval-num-rays-per-chunk must be >= 1"):
        LoEModelConfig(eval_num_rays_per_chunk=0)
    with pytest.raises(
        ConfigError, match="--pipeline.datamanager.train-num-rays-per-batch 0: give at least 1"
    ):
        ValidatedDataManagerConfig(train_num_rays_per_batch=0)
    with pytest.raises(ConfigError, match="--pipeline.datamanager.patch-size 0: give at least 1"):
        ValidatedDataManagerConfig(patch_size=0)
    assert ValidatedDataManagerConfig(train_num_rays_per_batch=1).eval_num_rays_per_batch == 1024


@pytest.mark.parametrize(
    ("spec", "mult"),
    [
        (loe_nerf, 0.002),
        (mlp_nerf, 0.002),
        (partition_nerf, 0.002),
        (asmr_nerf, 0.002),
        (nid_dictionary, 0.0),
        (nid_nerf, 0.0),
    ],
    ids=lambda v: getattr(getattr(v, "config", None), "method_name", str(v)),
)
def test_each_method_trains_with_its_documented_distortion_weight(spec, mult):
    """The LoE family and asmr-nerf penalise weight spread along rays out of the box (README's
    option table); the NID methods, measured without it, keep it off."""
    assert spec.config.pipeline.model.distortion_loss_mult == mult


@pytest.mark.parametrize("form", ["full", "modulated"])
def test_residual_penalty_trains_through_the_gradient_and_is_logged(form):
    """loe-nerf's residual penalty is applied as weight decay (not a loss term): a backward pass
    whose loss carries no gradient leaves each residual the penalty's own, 2 m R / R.numel(), and
    the penalty's value is logged as a metric (for modulated banks R is each bank's (g, c))."""
    model = _model(residual_banks=True, residual_scale=0.1, residual_penalty_mult=2.0, residual_form=form)
    layers = model.field.trunk.mlp.layers
    with torch.no_grad():
        for layer in layers:
            layer.weight.normal_()
    outputs = model.get_outputs(_rays(16))
    batch = {"image": torch.rand(16, 3)}
    losses = model.get_loss_dict(outputs, batch)
    assert "residual_loss" not in losses
    expected = 2.0 * sum(float(layer.weight.detach().square().mean()) for layer in layers)
    assert float(model.get_metrics_dict(outputs, batch)["residual_penalty"]) == pytest.approx(expected)
    (0.0 * sum(losses.values())).backward()
    for layer in layers:
        torch.testing.assert_close(layer.weight.grad, 4.0 * layer.weight.detach() / layer.weight.numel())


def test_residual_penalty_refuses_mixed_precision():
    """The penalty acts on the gradient, which a grad scaler would scale: said, not silently weakened."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes

    class EnabledScaler:
        def is_enabled(self) -> bool:
            return True

    model = _model(residual_banks=True, residual_penalty_mult=2.0)
    with pytest.raises(ConfigError, match="mixed-precision False"):
        model.get_training_callbacks(TrainingCallbackAttributes(None, EnabledScaler(), None, None))
    unpenalised = _model(residual_banks=True)
    assert unpenalised.get_training_callbacks(TrainingCallbackAttributes(None, EnabledScaler(), None, None))
