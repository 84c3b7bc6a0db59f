"""Rendering core: analytic cases, grid culling, dense reference, and CUDA backend equivalence."""

import math

import pytest
import torch

from nerf_loe.rendering.marcher import GridMarcher, GridMarcherConfig
from nerf_loe.rendering.marching import march
from nerf_loe.rendering.occupancy_grid import OccupancyGrid
from nerf_loe.rendering.volume_rendering import accumulate, render_weights

AABB = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def x_rays(n=1, y=0.0):
    origins = torch.tensor([[-2.0, y, 0.0]]).repeat(n, 1)
    return origins, torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)


def test_homogeneous_slab_transmittance_and_weights():
    sigma, thickness = 3.0, 0.5
    grid = OccupancyGrid(AABB, resolution=16)
    rays_o, rays_d = x_rays()
    samples = march(grid, rays_o, rays_d, step_size=1 / 256, backend="torch")
    x = samples.positions(rays_o, rays_d)[:, 0]
    sigmas = torch.where(x.abs() < thickness / 2, sigma, 0.0)
    weights, trans, _ = render_weights(
        samples.t_starts, samples.t_ends, sigmas, samples.ray_indices, 1, "torch"
    )
    assert abs(weights.sum().item() - (1 - math.exp(-sigma * thickness))) < 1e-4
    behind = x > thickness / 2
    assert torch.allclose(trans[behind], torch.tensor(math.exp(-sigma * thickness)), atol=1e-4)


def test_huge_density_on_one_ray_leaves_later_rays_exact():
    """Packed prefix sums span the batch: an infinite density must not leak into other rays."""
    t = torch.linspace(0.0, 1.0, 11)
    t_starts, t_ends = torch.cat([t[:-1], t[:-1]]), torch.cat([t[1:], t[1:]])
    ray_indices = torch.repeat_interleave(torch.arange(2), 10)
    sigmas = torch.cat([torch.full((10,), float("inf")), torch.full((10,), 2.0)]).requires_grad_()
    weights, trans, _ = render_weights(t_starts, t_ends, sigmas, ray_indices, 2, "torch")
    assert weights[:10].sum().item() == pytest.approx(1.0)
    assert weights[10:].sum().item() == pytest.approx(1 - math.exp(-2.0), abs=1e-6)
    torch.testing.assert_close(trans[10:], torch.exp(-2.0 * t[:-1]), atol=1e-6, rtol=0)
    weights[10:].sum().backward()
    assert torch.isfinite(sigmas.grad).all()


def test_empty_grid_gives_no_samples_and_background():
    marcher = GridMarcher(GridMarcherConfig(grid_resolution=8, backend="torch"), AABB).eval()
    marcher.grid.binaries.zero_()
    rays_o, rays_d = x_rays(4)
    samples = marcher.sample(rays_o, rays_d)
    assert len(samples) == 0
    out = marcher.render(samples, torch.zeros(0), torch.zeros(0, 3), 4, "white")
    assert torch.equal(out["rgb"], torch.ones(4, 3))
    assert torch.equal(out["accumulation"], torch.zeros(4, 1))


def test_ray_missing_the_box_gets_no_samples():
    grid = OccupancyGrid(AABB, resolution=8)
    rays_o, rays_d = x_rays(2, y=1.5)
    assert len(march(grid, rays_o, rays_d, step_size=0.01, backend="torch")) == 0


def test_early_termination_stops_behind_an_opaque_wall():
    config = GridMarcherConfig(
        grid_resolution=8, early_stop="density", samples_per_diagonal=400, backend="torch"
    )
    marcher = GridMarcher(config, AABB).eval()
    rays_o, rays_d = x_rays(3)

    def wall(x):
        return torch.where(x[:, 0] > 0.0, 1e4, 0.0)

    samples = marcher.sample(rays_o, rays_d, wall)
    x = samples.positions(rays_o, rays_d)[:, 0]
    assert x.max() < 0.0 + 2 * marcher.step_size
    assert x.min() < -0.9  # free space in front is still sampled (the grid says occupied)


def test_grid_learns_a_sphere_and_marching_skips_free_space():
    grid = OccupancyGrid(AABB, resolution=32)
    radius = 0.5

    def sphere(x):
        return torch.where(x.norm(dim=-1) < radius, 100.0, 0.0)

    for step in range(0, 64, 16):
        grid.update(step, sphere, step_size=2 * math.sqrt(3) / 256, warmup_steps=256)
    centres = (grid.cell_coords.float() + 0.5) / 32 * 2 - 1
    dist = centres.norm(dim=-1)
    occupied = grid.binaries.flatten()
    half_cell_diag = math.sqrt(3) / 32
    assert occupied[dist < radius - half_cell_diag].all()
    far = dist > radius + half_cell_diag
    assert (~occupied[far]).float().mean() >= 0.9

    rays_o = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 0.9, 0.9]])
    rays_d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    samples = march(grid, rays_o, rays_d, step_size=0.01, backend="torch")
    positions = samples.positions(rays_o, rays_d)
    assert (positions.norm(dim=-1) < radius + 2 * half_cell_diag).all()
    assert (samples.ray_indices == 0).all()  # the ray that misses the sphere gets nothing


def test_cone_angle_steps_grow_with_distance():
    grid = OccupancyGrid(AABB, resolution=8, levels=3)
    rays_o, rays_d = x_rays()
    rays_o = rays_o * 2  # start at x = -4, inside level 2 (box [-4, 4])
    step, cone = 0.01, 0.05
    samples = march(grid, rays_o, rays_d, step_size=step, cone_angle=cone, backend="torch")
    dt = samples.t_ends - samples.t_starts
    expected = torch.clamp(samples.t_starts * cone, min=step)
    torch.testing.assert_close(dt[:-1], expected[:-1], rtol=1e-4, atol=1e-6)
    assert samples.t_ends[-1] == pytest.approx(8.0, abs=1e-4)


def smooth_field(x):
    centres = torch.tensor([[0.3, -0.2, 0.1], [-0.4, 0.3, -0.2]])
    d2 = ((x[:, None] - centres) ** 2).sum(-1)
    sigma = (torch.exp(-d2 / 0.05) * torch.tensor([20.0, 8.0])).sum(-1)
    rgb = torch.sigmoid(torch.stack([x[:, 0] * 3, x[:, 1] * 2 + x[:, 2], -x[:, 2] * 4], -1))
    return sigma, rgb


def random_rays(n, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=g)
    origins = origins / origins.norm(dim=-1, keepdim=True) * 2.5
    targets = torch.rand(n, 3, generator=g) - 0.5
    dirs = targets - origins
    return origins.to(device), (dirs / dirs.norm(dim=-1, keepdim=True)).to(device)


def test_torch_backend_matches_dense_cumprod_reference():
    """CPU twin of the CUDA equivalence test: packed torch rendering vs uniform samples + cumprod."""
    torch.manual_seed(0)
    grid = OccupancyGrid(AABB, resolution=16)  # all occupied: marching = uniform samples in the box
    rays_o, rays_d = random_rays(64)
    step = 0.01
    samples = march(grid, rays_o, rays_d, step_size=step, backend="torch")
    sigma, rgb = smooth_field(samples.positions(rays_o, rays_d))
    weights, _, _ = render_weights(samples.t_starts, samples.t_ends, sigma, samples.ray_indices, 64, "torch")
    color = accumulate(rgb, weights, samples.ray_indices, 64)

    for r in range(64):  # dense reference, one ray at a time
        t_enter = ((AABB[:3] - rays_o[r]) / rays_d[r]).minimum((AABB[3:] - rays_o[r]) / rays_d[r]).max()
        t_exit = ((AABB[:3] - rays_o[r]) / rays_d[r]).maximum((AABB[3:] - rays_o[r]) / rays_d[r]).min()
        if t_exit <= t_enter:
            assert color[r].abs().max() == 0
            continue
        t = torch.arange(t_enter, t_exit, step)
        t_end = torch.minimum(t + step, t_exit)
        s, c = smooth_field(rays_o[r] + ((t + t_end) / 2)[:, None] * rays_d[r])
        alpha = 1 - torch.exp(-s * (t_end - t))
        trans = torch.cumprod(torch.cat([torch.ones(1), 1 - alpha[:-1]]), 0)
        ref = ((trans * alpha)[:, None] * c).sum(0)
        torch.testing.assert_close(color[r], ref, atol=1e-4, rtol=0)


def test_gradients_flow_to_densities_and_colours():
    grid = OccupancyGrid(AABB, resolution=8)
    rays_o, rays_d = random_rays(8)
    samples = march(grid, rays_o, rays_d, step_size=0.05, backend="torch")
    sigma = torch.full((len(samples),), 0.5, requires_grad=True)
    rgb = torch.full((len(samples), 3), 0.5, requires_grad=True)
    w, _, _ = render_weights(samples.t_starts, samples.t_ends, sigma, samples.ray_indices, 8, "torch")
    accumulate(rgb, w, samples.ray_indices, 8).sum().backward()
    assert sigma.grad.abs().sum() > 0 and rgb.grad.abs().sum() > 0


@cuda
def test_nerfacc_backend_matches_torch_backend_on_cuda():
    grid = OccupancyGrid(AABB, resolution=32).cuda()
    grid.update(0, lambda x: smooth_field(x)[0], step_size=0.01)
    rays_o, rays_d = random_rays(256, "cuda")
    step = 0.01
    a = march(grid, rays_o, rays_d, step_size=step, backend="torch")
    b = march(grid, rays_o, rays_d, step_size=step, backend="nerfacc")
    assert torch.equal(
        torch.bincount(a.ray_indices, minlength=256), torch.bincount(b.ray_indices, minlength=256)
    )
    assert (a.t_starts - b.t_starts).abs().max() < step
    colors = []
    for s, backend in ((a, "torch"), (b, "nerfacc")):
        sigma, rgb = smooth_field(s.positions(rays_o, rays_d))
        w, _, _ = render_weights(s.t_starts, s.t_ends, sigma, s.ray_indices, 256, backend)
        colors.append(accumulate(rgb, w, s.ray_indices, 256))
    torch.testing.assert_close(colors[0], colors[1], atol=1e-4, rtol=0)
