"""Rendering core: marching against a kernel-walk reference, analytic volume rendering, occupancy
grid culling and tracking, early termination, stratification, contraction, and CUDA equivalence."""

import math

import pytest
import torch
from marching_reference import reference_march

from nerf_loe.components.normalization import UnitBoxNormalizer
from nerf_loe.errors import ConfigError
from nerf_loe.rendering.marcher import GridMarcher, GridMarcherConfig
from nerf_loe.rendering.marching import march
from nerf_loe.rendering.occupancy_grid import OccupancyGrid
from nerf_loe.rendering.volume_rendering import accumulate, distortion, render_weights, visible_samples

AABB = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
FAR = 1e10


def planes(n, near=0.0, far=FAR, device="cpu"):
    return torch.full((n,), near, device=device), torch.full((n,), far, device=device)


def x_rays(n=1, y=0.0):
    origins = torch.tensor([[-2.0, y, 0.0]]).repeat(n, 1)
    return origins, torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)


def random_rays(n, device="cpu", seed=0, radius=2.5):
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=g)
    origins = origins / origins.norm(dim=-1, keepdim=True) * radius
    dirs = torch.rand(n, 3, generator=g) - 0.5 - origins
    return origins.to(device), (dirs / dirs.norm(dim=-1, keepdim=True)).to(device)


# --- marching: nerfacc 0.5.2's rule, against an independent walk of one ray at a time ----------


@pytest.mark.parametrize(
    "levels, resolution, cone, near, far, jitter",
    [
        (1, 16, 0.0, 0.0, FAR, False),  # one level, constant steps
        (1, 16, 0.0, 2.0, 3.2, True),  # near/far planes cut the span; stratified
        (3, 8, 0.0, 0.3, 7.0, True),  # several levels
        (3, 8, 0.05, 0.0, FAR, False),  # cone angle: steps grow, frozen while skipping
        (2, 16, 0.02, 0.5, 9.0, True),  # everything at once
    ],
)
def test_torch_marching_matches_the_kernel_walk(levels, resolution, cone, near, far, jitter):
    torch.manual_seed(levels * 100 + resolution)
    grid = OccupancyGrid(AABB, resolution=resolution, levels=levels)
    grid.binaries = torch.rand(grid.binaries.shape) < 0.4  # partial, uneven occupancy
    n = 160
    rays_o, rays_d = random_rays(n, seed=resolution, radius=2.5 if levels == 1 else 5.0)
    near_planes, far_planes = planes(n, near, far)
    if jitter:
        near_planes = near_planes + torch.rand(n) * 0.03
    got = march(grid, rays_o, rays_d, near_planes, far_planes, 0.03, cone, backend="torch")
    ray_indices, t_starts, t_ends = reference_march(grid, rays_o, rays_d, near_planes, far_planes, 0.03, cone)
    assert len(ray_indices) > 5 * n  # the case is not empty
    assert torch.equal(got.ray_indices, ray_indices)
    torch.testing.assert_close(got.t_starts.double(), t_starts, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.t_ends.double(), t_ends, atol=1e-5, rtol=0)


def test_marching_steps_from_the_near_plane_and_does_not_cut_the_last_step():
    """Hand-computed: ray along x from -2, box [-1, 1] (t in [1, 3]), step 0.4 from near 0.3:
    lattice 0.3 + 0.4 k; the steps whose midpoints (1.3 .. 2.9) lie in the box are kept whole, so
    the first starts at 1.1 (not at the entry, 1.0) and the last ends at 3.1 (past the exit)."""
    grid = OccupancyGrid(AABB, resolution=4)
    rays_o, rays_d = x_rays()
    s = march(grid, rays_o, rays_d, *planes(1, near=0.3), step_size=0.4, backend="torch")
    torch.testing.assert_close(s.t_starts, torch.tensor([1.1, 1.5, 1.9, 2.3, 2.7]))
    torch.testing.assert_close(s.t_ends, torch.tensor([1.5, 1.9, 2.3, 2.7, 3.1]))
    grid.binaries[:, 1] = False  # free the cells x in [-0.5, 0): t in [1.5, 2)
    s = march(grid, rays_o, rays_d, *planes(1, near=0.3), step_size=0.4, backend="torch")
    torch.testing.assert_close(s.t_starts, torch.tensor([1.1, 1.9, 2.3, 2.7]))  # midpoint 1.7 dropped


def test_cone_steps_grow_as_the_cone_angle_times_distance():
    grid = OccupancyGrid(AABB, resolution=8, levels=3)
    rays_o, rays_d = x_rays()
    step, cone = 0.01, 0.05
    s = march(grid, rays_o * 2, rays_d, *planes(1), step_size=step, cone_angle=cone, backend="torch")
    torch.testing.assert_close(
        s.t_ends - s.t_starts, torch.clamp(s.t_starts * cone, min=step), rtol=1e-5, atol=0
    )
    assert s.t_starts[0] < 0.01 + step and s.t_ends[-1] >= 8.0  # from the origin to past the far face


def test_ray_missing_the_box_gets_no_samples():
    grid = OccupancyGrid(AABB, resolution=8)
    rays_o, rays_d = x_rays(2, y=1.5)
    assert len(march(grid, rays_o, rays_d, *planes(2), step_size=0.01, backend="torch")) == 0


def test_empty_grid_gives_no_samples():
    grid = OccupancyGrid(AABB, resolution=8)
    grid.binaries.zero_()
    rays_o, rays_d = random_rays(16)
    assert len(march(grid, rays_o, rays_d, *planes(16), step_size=0.01, backend="torch")) == 0


def test_stratified_marching_shifts_each_rays_lattice_uniformly():
    marcher = GridMarcher(GridMarcherConfig(grid_resolution=8, early_stop="none", backend="torch"), AABB)
    rays_o, rays_d = x_rays(4000)
    step = marcher.step_size
    marcher.train()
    s = marcher.sample(rays_o, rays_d)
    first = torch.zeros(4000).scatter_reduce(0, s.ray_indices, s.t_starts, "amin", include_self=False)
    offsets = torch.remainder(first, step) / step  # lattice t = near + U[0, step) + k step, near = 0
    assert abs(offsets.mean().item() - 0.5) < 0.03 and offsets.min() < 0.01 and offsets.max() > 0.99
    marcher.eval()
    a, b = marcher.sample(rays_o[:3], rays_d[:3]), marcher.sample(rays_o[:3], rays_d[:3])
    assert torch.equal(a.t_starts, b.t_starts)
    remainder = torch.remainder(a.t_starts, step)
    assert torch.minimum(remainder, step - remainder).max() < 1e-4  # on the lattice k * step


def test_coarse_to_fine_steps_halve_in_equal_phases_and_never_in_evaluation():
    config = GridMarcherConfig(grid_resolution=8, early_stop="none", backend="torch", coarse_step_factor=8)
    config.coarse_until = 300  # three phases of 100 iterations: 8x, 4x, 2x, then 1x
    marcher = GridMarcher(config, AABB).train()
    factors = {}
    for iteration in (0, 99, 100, 199, 200, 299, 300, 5000):
        marcher.update_grid(iteration, lambda x: torch.ones_like(x[:, 0]))
        factors[iteration] = marcher.step_factor()
    assert factors == {0: 8, 99: 8, 100: 4, 199: 4, 200: 2, 299: 2, 300: 1, 5000: 1}
    marcher.update_grid(0, lambda x: torch.ones_like(x[:, 0]))
    rays_o, rays_d = x_rays(1)
    coarse = marcher.sample(rays_o, rays_d)
    marcher.eval()
    fine = marcher.sample(rays_o, rays_d)
    # the ray crosses the whole box ([-1, 1] along x): 2 / step samples, 8x fewer while coarse
    assert len(fine) == round(2 / marcher.step_size)
    assert abs(len(coarse) - len(fine) / 8) <= 1
    torch.testing.assert_close(
        coarse.t_ends - coarse.t_starts, torch.full((len(coarse),), 8 * marcher.step_size)
    )
    with pytest.raises(ConfigError, match="power of 2"):
        GridMarcherConfig(coarse_step_factor=3)


@pytest.mark.parametrize("bad", [{"grid_levels": 0}, {"early_stop_window": -1}, {"grid_resolution": 0}])
def test_marcher_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        GridMarcherConfig(**bad)


# --- volume rendering -------------------------------------------------------------------------


def slab_samples(sigma, thickness, step=1 / 256):
    grid = OccupancyGrid(AABB, resolution=16)
    rays_o, rays_d = x_rays()
    s = march(grid, rays_o, rays_d, *planes(1), step_size=step, backend="torch")
    x = s.positions(rays_o, rays_d)[:, 0]
    return s, x, torch.where(x.abs() < thickness / 2, sigma, 0.0)


def test_homogeneous_slab_transmittance_and_weights():
    sigma, thickness = 3.0, 0.5
    s, x, sigmas = slab_samples(sigma, thickness)
    weights, trans, _ = render_weights(s.t_starts, s.t_ends, sigmas, s.ray_indices, 1, "torch")
    assert abs(weights.sum().item() - (1 - math.exp(-sigma * thickness))) < 1e-4
    behind = x > thickness / 2
    assert torch.allclose(trans[behind], torch.tensor(math.exp(-sigma * thickness)), atol=1e-4)


def test_slab_opacity_gradient_is_the_analytic_derivative():
    """d(1 - exp(-sigma d)) / d sigma = d exp(-sigma d), summed over the slab's samples."""
    sigma, thickness = 2.0, 0.5
    s, x, _ = slab_samples(sigma, thickness)
    inside = x.abs() < thickness / 2
    sigma_t = torch.tensor(sigma, requires_grad=True)
    sigmas = torch.where(inside, sigma_t, torch.zeros(()))
    weights, _, _ = render_weights(s.t_starts, s.t_ends, sigmas, s.ray_indices, 1, "torch")
    weights.sum().backward()
    depth = (s.t_ends - s.t_starts)[inside].sum().item()  # the slab's thickness as sampled
    assert sigma_t.grad.item() == pytest.approx(depth * math.exp(-sigma * depth), rel=1e-5)


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


def test_distortion_matches_the_pairwise_sum():
    """Packed linear-time distortion vs the definition, a double loop over each ray's samples."""
    torch.manual_seed(0)
    counts = torch.tensor([5, 0, 1, 7])
    ray_indices = torch.repeat_interleave(torch.arange(4), counts)
    t_starts = torch.cat([torch.sort(torch.rand(int(c)) * 3).values for c in counts])
    t_ends = t_starts + torch.rand(len(t_starts)) * 0.1
    weights = torch.rand(len(t_starts))
    got = distortion(weights, t_starts, t_ends, ray_indices, 4)
    for r in range(4):
        w, a, b = (v[ray_indices == r].tolist() for v in (weights, t_starts, t_ends))
        m = [(x + y) / 2 for x, y in zip(a, b, strict=True)]
        pairs = sum(w[i] * w[j] * abs(m[i] - m[j]) for i in range(len(w)) for j in range(len(w)))
        own = sum(w[i] ** 2 * (b[i] - a[i]) for i in range(len(w))) / 3
        assert got[r].item() == pytest.approx(pairs + own, rel=1e-5, abs=1e-7)


def smooth_field(x):
    centres = torch.tensor([[0.3, -0.2, 0.1], [-0.4, 0.3, -0.2]], device=x.device)
    d2 = ((x[:, None] - centres) ** 2).sum(-1)
    sigma = (torch.exp(-d2 / 0.05) * torch.tensor([20.0, 8.0], device=x.device)).sum(-1)
    rgb = torch.sigmoid(torch.stack([x[:, 0] * 3, x[:, 1] * 2 + x[:, 2], -x[:, 2] * 4], -1))
    return sigma, rgb


def render_packed(s, rays_o, rays_d, n, backend="torch"):
    sigma, rgb = smooth_field(s.positions(rays_o, rays_d))
    weights, _, _ = render_weights(s.t_starts, s.t_ends, sigma, s.ray_indices, n, backend)
    return accumulate(rgb, weights, s.ray_indices, n)


def test_packed_rendering_matches_dense_cumprod_reference():
    """Packed torch rendering vs per-ray samples on the same lattice composited with cumprod."""
    grid = OccupancyGrid(AABB, resolution=16)  # all occupied: every lattice step in the box
    n, step = 64, 0.01
    rays_o, rays_d = random_rays(n)
    s = march(grid, rays_o, rays_d, *planes(n), step_size=step, backend="torch")
    color = render_packed(s, rays_o, rays_d, n)
    for r in range(n):
        lo = (AABB[:3] - rays_o[r]) / rays_d[r]
        hi = (AABB[3:] - rays_o[r]) / rays_d[r]
        t_enter, t_exit = lo.minimum(hi).max(), lo.maximum(hi).min()
        if t_exit <= t_enter:
            assert color[r].abs().max() == 0
            continue
        k = torch.arange(math.floor(t_enter / step) - 1, math.ceil(t_exit / step) + 1)
        t = k * step
        t = t[(t + step / 2 >= t_enter) & (t + step / 2 < t_exit)]
        sigma, c = smooth_field(rays_o[r] + (t + step / 2)[:, None] * rays_d[r])
        alpha = 1 - torch.exp(-sigma * step)
        trans = torch.cumprod(torch.cat([torch.ones(1), 1 - alpha[:-1]]), 0)
        torch.testing.assert_close(color[r], ((trans * alpha)[:, None] * c).sum(0), atol=1e-4, rtol=0)


# --- occupancy grid ---------------------------------------------------------------------------


def test_cell_of_picks_the_finest_level_and_its_cell():
    """Hand-computed on a 3-level grid over [-1, 1]^3 (levels [-1,1], [-2,2], [-4,4]), 4 cells/axis."""
    grid = OccupancyGrid(AABB, resolution=4, levels=3)
    points = torch.tensor(
        [
            [0.1, -0.6, 0.9],  # level 0, cells of 0.5: (2, 0, 3)
            [1.5, 0.0, -1.9],  # level 1, cells of 1.0: (3, 2, 0)
            [-3.9, 2.5, 0.2],  # level 2, cells of 2.0: (0, 3, 2)
            [5.0, 0.0, 0.0],  # outside every level
        ]
    )
    level, flat, inside = grid.cell_of(points)
    assert level.tolist()[:3] == [0, 1, 2] and inside.tolist() == [True, True, True, False]
    ijk = [(2, 0, 3), (3, 2, 0), (0, 3, 2)]
    assert flat.tolist()[:3] == [(i * 4 + j) * 4 + k for i, j, k in ijk]
    grid.binaries.zero_()
    grid.binaries[1, 3, 2, 0] = True  # uneven occupancy: one cell of level 1
    assert grid.is_occupied(points).tolist() == [False, True, False, False]


def sphere_density(center, radius):
    return lambda x: torch.where((x - center).norm(dim=-1) < radius, 100.0, 0.0)


def cell_distances(grid, center):
    """Nearest and farthest distance from ``center`` to every level-0 cell (exact box geometry)."""
    size = (AABB[3:] - AABB[:3]) / grid.resolution
    lo = AABB[:3] + grid.cell_coords.float() * size
    hi = lo + size
    nearest = (torch.maximum(lo - center, torch.zeros(3)) + torch.maximum(center - hi, torch.zeros(3))).norm(
        dim=-1
    )
    farthest = torch.maximum((lo - center).abs(), (hi - center).abs()).norm(dim=-1)
    return nearest, farthest


def test_grid_culls_exactly_the_cells_a_sphere_misses():
    grid = OccupancyGrid(AABB, resolution=16)
    center, radius = torch.tensor([0.1, -0.2, 0.0]), 0.5
    for step in range(0, 64, 16):  # warm-up: every cell re-evaluated
        grid.update(step, sphere_density(center, radius), step_size=0.01, warmup_steps=256)
    nearest, farthest = cell_distances(grid, center)
    occupied = grid.binaries.flatten()
    assert occupied[farthest < radius].all()  # cells entirely inside
    assert not occupied[nearest > radius].any()  # cells entirely outside
    rays_o = torch.tensor([[-2.0, -0.2, 0.0], [-2.0, 0.9, 0.9]])
    rays_d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    s = march(grid, rays_o, rays_d, *planes(2), step_size=0.01, backend="torch")
    assert (s.ray_indices == 0).all() and len(s) > 0  # the ray that misses the sphere gets nothing
    assert ((s.positions(rays_o, rays_d) - center).norm(dim=-1) < radius + math.sqrt(3) * 2 / 16).all()


def test_grid_tracks_a_moving_density_after_warm_up():
    """After warm-up a random quarter plus the occupied cells are re-evaluated per update: cells the
    density left decay (EMA 0.95) below the threshold within log(0.01 / opacity) / log(0.95)
    updates, and new cells fill as soon as a uniform draw visits them."""
    torch.manual_seed(0)
    grid = OccupancyGrid(AABB, resolution=16)
    radius, step_size, warmup = 0.3, 0.01, 4
    a, b = torch.tensor([-0.5, 0.0, 0.0]), torch.tensor([0.5, 0.0, 0.0])
    for step in range(warmup):
        grid.update(step, sphere_density(a, radius), step_size, warmup_steps=warmup)
    near_a, far_a = cell_distances(grid, a)
    assert grid.binaries.flatten()[far_a < radius].all()
    bound = math.ceil(math.log(0.01 / (100.0 * step_size)) / math.log(0.95)) + 10
    for step in range(warmup, warmup + bound):
        grid.update(step, sphere_density(b, radius), step_size, warmup_steps=warmup)
    occupied = grid.binaries.flatten()
    near_b, far_b = cell_distances(grid, b)
    assert not occupied[near_b > radius].any()  # every cell the density left is free again
    assert occupied[far_b < radius].all()  # every cell inside the new position is occupied


def test_spare_formless_start_keeps_the_first_update_of_a_field_without_matter():
    """nerfacc's cutoff, min(mean, 0.01), cuts the below-mean half of a field with no cell above
    0.01 (a smooth untrained one: any objects there would never get samples again), as the default
    marcher does. With ``spare_formless_start`` (asmr-nerf's default) the update at iteration 0
    keeps every cell then; with matter there, and at later updates, nerfacc's rule holds."""

    def half(opacity, step_size):  # empty for x < 0 (cells 0..3 along x), else this opacity a step
        return lambda x: (x[:, 0] > 0).float() * opacity / step_size

    default = GridMarcher(GridMarcherConfig(grid_resolution=8, backend="torch"), AABB)
    spared = GridMarcherConfig(grid_resolution=8, backend="torch", spare_formless_start=True)
    formless, formed = GridMarcher(spared, AABB), GridMarcher(spared, AABB)
    x_index = default.grid.cell_coords[:, 0].view(default.grid.binaries.shape)
    step = default.step_size

    default.update_grid(0, half(0.005, step))
    torch.testing.assert_close(default.grid.binaries, x_index >= 4, rtol=0, atol=0)
    formless.update_grid(0, half(0.005, step))
    assert formless.grid.binaries.all()
    formless.update_grid(16, half(0.005, step))
    torch.testing.assert_close(formless.grid.binaries, x_index >= 4, rtol=0, atol=0)
    formed.update_grid(0, half(0.02, step))
    torch.testing.assert_close(formed.grid.binaries, x_index >= 4, rtol=0, atol=0)

    from nerf_loe.models.asmr_model import ASMRModelConfig
    from nerf_loe.models.field_model import FieldModelConfig

    assert (
        ASMRModelConfig().marcher.spare_formless_start and not FieldModelConfig().marcher.spare_formless_start
    )


# --- early termination ------------------------------------------------------------------------


def test_early_stop_does_not_clip_a_thin_slab_in_a_cells_corner():
    """A ray through a cell's empty part keeps its samples; the pre-pass equals no early stop."""

    def thin_slab(x):  # 0.02 thick, in the corner of a 0.25-wide cell (x, y in [0, 0.25]); a wall behind
        slab = (x[:, 0] > 0.0) & (x[:, 0] < 0.02) & (x[:, 1] > 0.0) & (x[:, 1] < 0.05)
        wall = (x[:, 0] > 0.5) & (x[:, 0] < 0.6)
        return torch.where(slab | wall, 300.0, 0.0)

    rays_o = torch.tensor([[-2.0, 0.03, 0.1], [-2.0, 0.2, 0.1], [-2.0, 0.1, 0.2]])  # through, beside x2
    rays_d = torch.tensor([[1.0, 0.0, 0.0]] * 3)
    colors = {}
    for mode in ("density", "none"):
        config = GridMarcherConfig(
            grid_resolution=8, early_stop=mode, samples_per_diagonal=1024, backend="torch"
        )
        marcher = GridMarcher(config, AABB).eval()  # the grid as before warm-up: all occupied
        s = marcher.sample(rays_o, rays_d, thin_slab)
        x = s.positions(rays_o, rays_d)
        rgb = torch.stack([x[:, 0], x[:, 1], torch.ones_like(x[:, 0])], -1).sigmoid()
        colors[mode] = marcher.render(s, thin_slab(x), rgb, torch.zeros(3, 3))["rgb"]
    torch.testing.assert_close(colors["density"], colors["none"], atol=1e-3, rtol=0)
    assert colors["none"][0, 0] < 0.52  # the first ray stops in the slab (x ~ 0.01)
    assert (colors["none"][1:, 0] > 0.6).all()  # the rays beside it, in its cell, see the wall (x ~ 0.5)


def test_early_stop_drops_samples_behind_an_opaque_wall():
    config = GridMarcherConfig(
        grid_resolution=8, early_stop="density", samples_per_diagonal=400, backend="torch"
    )
    marcher = GridMarcher(config, AABB).eval()
    rays_o, rays_d = x_rays(3)

    def wall(x):
        return torch.where(x[:, 0] > 0.0, 1e4, 0.0)

    s = marcher.sample(rays_o, rays_d, wall)
    x = s.positions(rays_o, rays_d)[:, 0]
    assert x.max() < 0.0 + 2 * marcher.step_size
    assert x.min() < -0.9  # free space in front is still sampled (the grid says occupied)


@pytest.mark.parametrize("window", [0, 1, 3, 32])
def test_windowed_early_stop_keeps_exactly_the_samples_a_front_to_back_walk_keeps(window):
    """Against a per-ray loop: keep a sample while the light reaching it is >= eps and its alpha
    >= alpha_thre; densities are asked for at most one window past each ray's termination."""
    g = torch.Generator().manual_seed(window)
    counts = torch.randint(0, 60, (40,), generator=g)
    ray_indices = torch.repeat_interleave(torch.arange(40), counts)
    dt = torch.rand(len(ray_indices), generator=g) * 0.1
    starts = torch.cat([torch.cumsum(d, 0) - d for d in dt.split(counts.tolist())])
    sigmas = torch.rand(len(ray_indices), generator=g).pow(4) * 40  # mostly thin, some opaque
    asked = torch.zeros(len(ray_indices), dtype=torch.long)

    def density_of(idx):
        asked[idx] += 1
        return sigmas[idx]

    keep = visible_samples(starts, starts + dt, density_of, ray_indices, 40, 1e-2, 0.05, window)
    expected, first = [], 0
    for n in counts.tolist():
        light, hidden_from = 1.0, None
        for i in range(first, first + n):
            alpha = 1.0 - math.exp(-float(sigmas[i] * dt[i]))
            expected.append(light >= 1e-2 and alpha >= 0.05)
            if light < 1e-2 and hidden_from is None:
                hidden_from = i - first
            light *= 1.0 - alpha
        if window and hidden_from is not None:  # windows end at w, 3w, 7w, ...: the first past it
            end = window
            while end <= hidden_from - 1:  # the window holding the last sample lit above eps
                end = 2 * end + window
            assert asked[first + min(end, n) : first + n].sum() == 0
        first += n
    assert keep.tolist() == expected
    assert asked.max() <= 1  # each density at most once
    assert (asked == 0).any() == (window > 0)  # windows skip the hidden tails
    assert 0 < int((~keep).sum()) < len(keep)  # the case has hidden and visible samples


# --- background and contraction ---------------------------------------------------------------


def test_far_points_sit_where_each_ray_leaves_the_box():
    marcher = GridMarcher(GridMarcherConfig(grid_resolution=8), AABB)
    rays_o = torch.tensor([[-2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [-2.0, 3.0, 0.0], [0.5, 0.5, 0.5]])
    rays_d = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.5, 0.0], [0, 0, -1.0], [1, 0, 0], [0, 1, 0]]), dim=-1
    )
    expected = torch.tensor(
        [
            [0.0, 1.0, 0.0],  # y = (x + 2) / 2 reaches the top face y = 1 at x = 0
            [0.0, 0.0, -1.0],  # straight through
            [0.0, 1.0, 0.0],  # misses above: closest approach (x=0, y=3) clamped onto the box
            [0.5, 1.0, 0.5],  # starts inside
        ]
    )
    torch.testing.assert_close(marcher.far_points(rays_o, rays_d), expected)


def test_scene_contraction_of_unbounded_scenes_by_hand():
    """L-inf contraction: x inside the unit ball stays, else (2 - 1/|x|) x/|x|; then (x + 2) / 4."""
    normalizer = UnitBoxNormalizer(torch.tensor([[-1.0] * 3, [1.0] * 3]), contract=True)
    points = torch.tensor([[0.5, 0.0, -1.0], [4.0, 0.0, 0.0], [2.0, -4.0, 1.0], [1e6, 0.0, 0.0]])
    contracted = torch.tensor([[0.5, 0.0, -1.0], [1.75, 0.0, 0.0], [0.875, -1.75, 0.4375], [2.0, 0.0, 0.0]])
    expected = ((contracted + 2) / 4).clamp(max=1 - 1e-6)
    torch.testing.assert_close(normalizer(points), expected)
    assert normalizer.inside(points).all()


# --- CUDA: nerfacc's kernels against the same reference and the torch backend -----------------


@pytest.mark.cuda
@pytest.mark.parametrize("levels, cone", [(1, 0.0), (3, 1 / 64)])
def test_nerfacc_marching_matches_the_reference_and_torch_on_cuda(levels, cone):
    """nerfacc accumulates t in float32, so a step whose midpoint lies within rounding of a cell face
    may fall on either side: allow that for a few rays, and require the rest to agree exactly."""
    grid = OccupancyGrid(AABB, resolution=32, levels=levels)
    grid.update(0, lambda x: smooth_field(x)[0], step_size=0.01)
    n, step = 256, 0.01
    rays_o, rays_d = random_rays(n, radius=2.5 if levels == 1 else 5.0)
    near, far = planes(n)
    ri, t_starts, _ = reference_march(grid, rays_o, rays_d, near, far, step, cone)
    grid, rays_o, rays_d, near, far = grid.cuda(), rays_o.cuda(), rays_d.cuda(), near.cuda(), far.cuda()
    torch_s = march(grid, rays_o, rays_d, near, far, step, cone, backend="torch")
    nerfacc_s = march(grid, rays_o, rays_d, near, far, step, cone, backend="nerfacc")
    counts_ref = torch.bincount(ri, minlength=n)
    for s in (torch_s, nerfacc_s):
        same = torch.bincount(s.ray_indices.cpu(), minlength=n) == counts_ref
        assert same.float().mean() >= 0.98
        keep_ref, keep = same[ri], same[s.ray_indices.cpu()]
        torch.testing.assert_close(s.t_starts.cpu()[keep].double(), t_starts[keep_ref], atol=1e-4, rtol=0)
    colors = [render_packed(s, rays_o, rays_d, n, b) for s, b in ((torch_s, "torch"), (nerfacc_s, "nerfacc"))]
    close = (colors[0] - colors[1]).abs().amax(-1) < 1e-4
    assert close.float().mean() >= 0.98
