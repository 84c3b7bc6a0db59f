"""The density mesh on analytic fields: surface position, outward normals, colours, floaters."""

import pytest
import torch

from nerf_loe.errors import ConfigError
from nerf_loe.inspection.mesh import density_lattice, density_mesh, write_mesh

BOX = torch.tensor([[-1.0] * 3, [1.0] * 3])


def _ball(center, radius):
    c = torch.tensor(center)
    return lambda x: 100.0 * torch.sigmoid(40.0 * (radius - (x - c).norm(dim=-1)))  # 50 on the sphere


def test_a_ball_meshes_at_its_radius_with_outward_normals_and_field_colours():
    mesh = density_mesh(
        _ball([0.1, -0.2, 0.0], 0.5),
        BOX,
        resolution=40,
        level=50.0,
        color_fn=lambda x, d: (d + 1) / 2,  # shows the viewing direction
    )
    radial = torch.nn.functional.normalize(mesh.vertices - torch.tensor([0.1, -0.2, 0.0]), dim=-1)
    assert ((mesh.vertices - torch.tensor([0.1, -0.2, 0.0])).norm(dim=-1) - 0.5).abs().max() < 0.01
    assert (mesh.normals * radial).sum(-1).min() > 0.99
    # the colour function saw each vertex looked at from outside: direction = -normal
    assert torch.allclose(mesh.colors, (1 - mesh.normals) / 2, atol=1e-6)


def test_small_floaters_are_dropped_and_empty_space_is_not_evaluated():
    big, small = _ball([0.0, 0.0, 0.0], 0.6), _ball([0.8, 0.8, 0.8], 0.08)
    field = lambda x: torch.maximum(big(x), small(x))  # noqa: E731
    kept = density_mesh(field, BOX, resolution=48, level=50.0)
    assert (kept.vertices.norm(dim=-1) < 0.7).all()  # the floater's triangles are gone
    everything = density_mesh(field, BOX, resolution=48, level=50.0, min_component=0.0)
    assert len(everything.vertices) > len(kept.vertices)
    assert int(everything.faces.max()) < len(everything.vertices) and int(kept.faces.max()) < len(
        kept.vertices
    )

    asked = []
    lattice = density_lattice(
        lambda x: asked.append(len(x)) or big(x), BOX, 16, occupied=lambda x: x[:, 0] < 0
    )
    assert sum(asked) == 8 * 16 * 16 and (lattice[8:] == 0).all()  # only the occupied half


def test_a_level_outside_the_densities_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="--level 500: the density inside the box spans"):
        density_mesh(_ball([0.0] * 3, 0.5), BOX, resolution=12, level=500.0)
    mesh = density_mesh(_ball([0.0] * 3, 0.5), BOX, resolution=12, level=50.0)
    write_mesh(mesh, tmp_path / "ball.ply")
    assert (tmp_path / "ball.ply").stat().st_size > 1000
    with pytest.raises(ConfigError, match="use a .ply or .obj name"):
        write_mesh(mesh, tmp_path / "ball.xyz")
