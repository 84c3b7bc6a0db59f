"""The turntable camera path: geometry by hand, read back through nerfstudio's own path reader."""

import math

import pytest
import torch
from nerfstudio.cameras.camera_paths import get_path_from_json

from nerf_loe.errors import ConfigError
from nerf_loe.inspection.orbit import fov_of, orbit_path


def _ring(n=12, radius=3.0, height=1.5, centre=(0.5, -0.2, 0.3)):
    """Cameras on a ring above ``centre`` (z up), each looking at it."""
    angles = torch.arange(n) * 2 * math.pi / n + 0.3
    centre = torch.tensor(centre)
    ring = torch.stack([radius * angles.cos(), radius * angles.sin(), torch.full((n,), height)], -1)
    positions = centre + ring
    return positions, centre - positions, centre


def test_orbit_circles_the_focus_at_the_cameras_distance_and_elevation():
    positions, directions, centre = _ring()
    path = orbit_path(positions, directions, torch.tensor([0.0, 0.0, 1.0]), 50.0, 80, 60, frames=16)
    cameras = get_path_from_json(path)  # nerfstudio's reader of viewer camera paths
    c2w = cameras.camera_to_worlds
    eye = c2w[:, :3, 3]
    distance = math.hypot(3.0, 1.5)
    torch.testing.assert_close((eye - centre).norm(dim=-1), torch.full((16,), distance))
    torch.testing.assert_close(eye[:, 2] - centre[2], torch.full((16,), 1.5))  # elevation kept
    to_centre = torch.nn.functional.normalize(centre - eye, dim=-1)
    torch.testing.assert_close((-c2w[:, :3, 2] * to_centre).sum(-1), torch.ones(16))  # looks at the focus
    assert (c2w[:, 2, 1] > 0).all()  # image up leans to world up (no roll over)
    bearings = torch.atan2(eye[:, 1] - centre[1], eye[:, 0] - centre[0])
    steps = torch.remainder(bearings.roll(-1) - bearings, 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((16,), 2 * math.pi / 16))  # one even turn, closed
    assert abs(float(bearings[0]) - 0.3) < 1e-5  # starts beside the first camera
    # the field of view round-trips to the focal length nerfstudio gives the frames
    focal = 30.0 / math.tan(math.radians(25.0))  # half the height over tan(half the fov)
    torch.testing.assert_close(cameras.fy[:, 0].float(), torch.full((16,), focal))
    assert fov_of(float(cameras.fy[0]), 60) == pytest.approx(50.0)
    assert path["seconds"] * path["fps"] == pytest.approx(16)


def test_forward_facing_cameras_have_no_orbit():
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0]]).expand(3, 3)
    with pytest.raises(ConfigError, match="no focus point"):
        orbit_path(positions, directions, torch.tensor([0.0, 1.0, 0.0]), 50.0, 8, 8)
