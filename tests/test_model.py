"""LoE model behaviour that the end-to-end runs cannot isolate."""

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerf_loe.models.loe_model import LoEModelConfig


def _model():
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    config = LoEModelConfig(banks=("2x2x2", "2x2x2"), hidden_dim=16, background_color="white")
    return config.setup(scene_box=box, num_train_data=1)


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
        model.field.trunk.output.bias[0] = 1e4
    density = model.field.density_at(torch.zeros(4, 3))
    assert torch.isfinite(density).all() and density.max() <= torch.exp(torch.tensor(15.0))
    outputs = model.get_outputs(_rays(8))
    outputs["rgb"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.field.parameters() if p.grad is not None)
