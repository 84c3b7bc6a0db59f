"""The world's scale does not matter: densities are per scene-box side, and a bounded model's box
leaves the cameras outside."""

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerf_loe.data.extent import box_outside_cameras
from nerf_loe.models.loe_model import LoEModelConfig


def _model(half: float, **metadata):
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-half] * 3, [half] * 3]))
    config = LoEModelConfig(banks=("2x2x2", "2x2x2"), hidden_dim=16, background_color="black")
    return config.setup(scene_box=box, num_train_data=1, metadata=metadata)


@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_a_scaled_world_renders_the_same_image(scale):
    """Same network, world and cameras scaled by s: the same colours and opacities, depths times s."""
    big, small = _model(1.5), _model(1.5 * scale)  # the same seed: the same weights
    assert all(
        torch.equal(p, q) for p, q in zip(big.field.parameters(), small.field.parameters(), strict=True)
    )
    n = 64
    origins = torch.tensor([[0.2, -0.1, 4.0]]).expand(n, 3)
    directions = torch.nn.functional.normalize(
        torch.randn(n, 3) * 0.15 + torch.tensor([0.0, 0.0, -1.0]), dim=-1
    )

    def render(model, s):
        model.eval()
        rays = RayBundle(
            origins=origins * s, directions=directions, pixel_area=torch.ones(n, 1), camera_indices=None
        )
        with torch.no_grad():
            return model.get_outputs(rays)

    a, b = render(big, 1.0), render(small, scale)
    assert a["accumulation"].mean() > 0.3  # something to see
    assert torch.allclose(a["rgb"], b["rgb"], atol=1e-4) and torch.allclose(
        a["accumulation"], b["accumulation"], atol=1e-4
    )
    assert torch.allclose(a["depth"] * scale, b["depth"], rtol=1e-3, atol=1e-4)


def _looking_at(target: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(target - positions, dim=-1)


def test_a_box_holding_cameras_becomes_a_cube_around_their_focus_leaving_them_outside():
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    target = torch.tensor([0.1, -0.2, 0.05])  # where the cameras look, off the box centre
    ring = torch.tensor([[0.9, 0.0, 0.3], [0.0, -0.8, 0.5], [-0.7, 0.2, 0.6], [0.3, 0.7, 0.4]])
    fitted, reason = box_outside_cameras(aabb, ring, _looking_at(target, ring))
    half = 0.4 * min(float((c - target).norm()) for c in ring)
    assert torch.allclose(fitted, torch.stack([target - half, target + half]), atol=1e-5)
    assert not ((ring >= fitted[0]) & (ring <= fitted[1])).all(dim=-1).any()
    assert reason.startswith("4 of 4 training cameras lie inside the scene box")
    far = ring * 4
    assert box_outside_cameras(aabb, far, _looking_at(target, far)) is None  # already clear
    forward = torch.tensor([[0.0, 0.0, -1.0]]).expand(4, 3)  # a forward-facing capture: no focus
    assert box_outside_cameras(aabb, ring, forward) is None


def test_bounded_models_clear_the_cameras_and_unbounded_ones_keep_the_box():
    cameras = torch.tensor([[0.0, 0.0, 0.8], [0.6, 0.0, 0.6]])
    metadata = {"camera_positions": cameras, "camera_directions": _looking_at(torch.zeros(3), cameras)}
    bounded = _model(1.0, **metadata)
    assert torch.allclose(
        bounded.scene_box.aabb, torch.tensor([[-0.4 * 0.8] * 3, [0.4 * 0.8] * 3]), atol=1e-5
    )
    assert torch.allclose(bounded.field.normalizer.aabb, bounded.scene_box.aabb)
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    for config in (
        LoEModelConfig(banks=("2x2x2",), hidden_dim=8, unbounded=True),
        LoEModelConfig(banks=("2x2x2",), hidden_dim=8, box_outside_cameras=False),
    ):
        model = config.setup(scene_box=box, num_train_data=1, metadata=metadata)
        assert torch.equal(model.scene_box.aabb, box.aabb)
