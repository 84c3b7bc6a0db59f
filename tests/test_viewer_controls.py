"""Viewer controls and method maps, without a browser: the occupancy grid drawn into a (recording)
viser scene, NID's expert map, gate energy and render-time top-k, and ASMR's sharing toggle.
Reference values come from hand-computed cells and from the dictionary head's own forward with
one expert switched on at a time."""

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils import colormaps

from nerf_loe.inspection.grid_view import occupied_cells
from nerf_loe.inspection.region_map import region_colors
from nerf_loe.models.asmr_model import ASMRModelConfig
from nerf_loe.models.loe_model import LoEModelConfig
from nerf_loe.models.nid_model import NIDModelConfig
from nerf_loe.rendering.occupancy_grid import OccupancyGrid

BOX = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))


def _setup(config, **metadata):
    torch.manual_seed(0)
    return config.setup(scene_box=BOX, num_train_data=1, metadata=metadata)


class _Cloud:
    def __init__(self, log: list, **kwargs) -> None:
        self.kwargs, self.log = kwargs, log

    def remove(self) -> None:
        self.log.append("removed")


class _Scene:
    """Records what the model draws, as viser's SceneApi would receive it."""

    def __init__(self) -> None:
        self.log: list = []

    def add_point_cloud(self, name, **kwargs):
        cloud = _Cloud(self.log, name=name, **kwargs)
        self.log.append(cloud)
        return cloud


class _Server:
    def __init__(self) -> None:
        self.scene = _Scene()


def _connect(model) -> _Scene:
    model.viewer_control.viser_server = _Server()  # what ViewerControl._setup gives
    return model.viewer_control.viser_server.scene


def _toggle(element, value) -> None:
    """What the viewer does on a click: set the value, run the element's callback."""
    element.value = value
    element.cb_hook(element)


def test_occupied_cells_are_cell_centres_and_finer_levels_own_their_box():
    grid = OccupancyGrid(torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), resolution=4, levels=2)
    grid.binaries[:] = False
    grid.binaries[0, 1, 2, 3] = True  # level 0, cells of 0.25: centre (0.375, 0.625, 0.875)
    grid.binaries[1, 0, 0, 0] = True  # level 1 spans [-0.5, 1.5], cells of 0.5: centre -0.25, outside level 0
    grid.binaries[1, 1, 1, 1] = True  # centre 0.25: inside level 0's box, so level 0 owns it
    points, levels = occupied_cells(grid)
    assert torch.allclose(points, torch.tensor([[0.375, 0.625, 0.875], [-0.25, -0.25, -0.25]]))
    assert levels.tolist() == [0, 1]
    grid.binaries[:] = True
    assert len(occupied_cells(grid, limit=100)[0]) == 100


def test_the_grid_checkbox_draws_the_occupied_cells_in_viewer_units_and_hides_them():
    model = _setup(LoEModelConfig(banks=("2x2x2",), hidden_dim=8))
    model.draw_grid()  # headless: no viewer, nothing happens, nothing breaks
    grid = model.marcher.grid
    grid.binaries[:] = False
    grid.binaries[0, 0, 0, 0] = grid.binaries[0, -1, -1, -1] = True
    scene = _connect(model)
    _toggle(model.show_grid, True)
    cloud = scene.log[-1]
    box, res = grid.aabbs[0], grid.resolution
    corner = box[:3] + 0.5 / res * (box[3:] - box[:3])
    want = torch.stack([corner, box[3:] - 0.5 / res * (box[3:] - box[:3])]) * 10.0  # viser units
    assert torch.allclose(torch.from_numpy(cloud.kwargs["points"]), want, atol=1e-5)
    assert cloud.kwargs["colors"].tolist() == [[255, 140, 0]] * 2
    _toggle(model.show_grid, False)
    assert scene.log[-1] == "removed"

    _toggle(model.show_grid, True)
    drawn = len(scene.log)
    model.refresh_grid_view(101)
    assert len(scene.log) == drawn  # not a redraw step
    model.refresh_grid_view(200)
    assert scene.log[-2] == "removed" and isinstance(scene.log[-1], _Cloud)


def _nid(**options):
    config = NIDModelConfig(num_experts=6, top_k=2, hidden_dim=16, num_layers=2, warmup_steps=0, **options)
    model = _setup(config, scenes=["a", "b"])
    model.field.trunk.dense.fill_(False)
    return model


def test_nid_grid_view_follows_the_viewer_scene():
    model = _nid()
    scene = _connect(model)
    for marcher, cell in zip(model.marchers, [(0, 0, 0), (1, 2, 3)], strict=True):
        marcher.grid.binaries[:] = False
        marcher.grid.binaries[(0, *cell)] = True
    _toggle(model.show_grid, True)
    first = scene.log[-1].kwargs["points"]
    _toggle(model.viewer_scene, 1)
    second = scene.log[-1].kwargs["points"]
    grid = model.marchers[1].grid
    centre = grid.aabbs[0, :3] + (torch.tensor([1.0, 2.0, 3.0]) + 0.5) / grid.resolution * 2.0
    assert torch.allclose(torch.from_numpy(second), centre[None] * 10.0, atol=1e-5)
    assert not torch.allclose(torch.from_numpy(first), torch.from_numpy(second))


def _contributions(trunk, x):
    """Each expert's contribution at x through the head's own forward, one expert's gate at a time."""
    h = trunk.mlp(trunk.encoding(x))
    gates = trunk.gates()[trunk.scene]
    scene = torch.zeros(len(x), dtype=torch.long)
    parts = []
    for j in range(len(gates)):
        alone = torch.zeros_like(gates)
        alone[j] = gates[j]
        parts.append(trunk.head(h, scene, alone[None], torch.zeros(1, trunk.head.out_dim)).square().sum(-1))
    return torch.stack(parts, dim=-1)


@pytest.mark.parametrize("scene", [0, 1])
def test_nid_expert_map_and_gate_energy_against_per_expert_contributions(scene):
    model = _nid()
    model.eval()
    trunk = model.field.trunk
    trunk.scene = scene
    torch.manual_seed(1)
    world = torch.rand(40, 3) * 1.6 - 0.8
    direction = torch.tensor([[0.0, 0.0, -1.0]]).expand(40, 3)
    accumulation = torch.ones(40, 1)
    accumulation[:5] = 0.2  # transparent rays: black
    outputs = {"depth": torch.full((40, 1), 2.0), "accumulation": accumulation}
    with torch.no_grad():
        maps = model._region_map(world - 2.0 * direction, direction, outputs)
        energy = _contributions(trunk, model.field.normalizer(world))
    assert int((energy > 0).sum(-1).max()) == 2  # only the scene's top-2 experts contribute
    share = energy.max(-1).values / energy.sum(-1)
    turbo = colormaps.apply_colormap(
        share[:, None], colormaps.ColormapOptions(colormap="turbo", normalize=False)
    )
    assert torch.allclose(maps["expert_map"][5:], region_colors(energy.argmax(-1))[5:], atol=1e-6)
    assert torch.allclose(maps["gate_energy"][5:], turbo[5:], atol=1e-5)
    assert (maps["expert_map"][:5] == 0).all() and (maps["gate_energy"][:5] == 0).all()
    assert (share >= 0.5 - 1e-6).all()  # two experts: the dominant one holds at least half


def test_nid_render_top_k_applies_only_when_rendering_and_zero_restores_training_gates():
    model = _nid()
    trunk = model.field.trunk
    with torch.no_grad():
        trunk.codes.copy_(torch.tensor([[0.1, -3.0, 2.0, 0.5, -1.0, 0.2], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]))
    trained = trunk.gates().clone()
    assert (trained != 0).sum(-1).tolist() == [2, 2]
    _toggle(model.render_top_k, 1)
    assert torch.equal(trunk.gates(), trained)  # training mode: as trained
    model.eval()
    with torch.no_grad():
        rendered = trunk.gates()
    assert rendered[0].tolist() == [0.0, -3.0, 0.0, 0.0, 0.0, 0.0]  # the largest |code|, signed
    assert rendered[1].tolist() == [0.0] * 5 + [6.0]
    _toggle(model.render_top_k, 4)
    with torch.no_grad():
        assert (trunk.gates() != 0).sum(-1).tolist() == [4, 4]
        rays = RayBundle(
            origins=torch.tensor([[0.0, 0.0, 3.0]]).expand(4, 3),
            directions=torch.tensor(
                [[0.1, 0.0, -1.0], [0.0, 0.1, -1.0], [-0.1, 0.0, -1.0], [0.0, 0.0, -1.0]]
            ),
            pixel_area=torch.ones(4, 1),
            camera_indices=None,
        )
        four = model.get_outputs(rays)["rgb"]
        _toggle(model.render_top_k, 0)
        assert torch.equal(trunk.gates(), trained)
        two = model.get_outputs(rays)["rgb"]
    assert not torch.allclose(four, two)  # the slider changes the picture


def test_asmr_sharing_toggle_switches_the_path_and_keeps_the_picture():
    model = _setup(ASMRModelConfig(bases=("2x2x2", "4x4x4"), hidden_dim=16, density_bias=2.0))
    assert model.share_activations.value is True
    trunk = model.field.trunk
    model.eval()
    rays = RayBundle(
        origins=torch.tensor([[0.0, 0.0, 3.0]]).expand(8, 3),
        directions=torch.nn.functional.normalize(
            torch.randn(8, 3) * 0.1 + torch.tensor([0.0, 0.0, -1.0]), dim=-1
        ),
        pixel_area=torch.ones(8, 1),
        camera_indices=None,
    )
    with torch.no_grad():
        trunk.reset_counters()
        shared = model.get_outputs(rays)
        assert trunk.shared_inputs > 0
        _toggle(model.share_activations, False)
        trunk.reset_counters()
        direct = model.get_outputs(rays)
        assert trunk.shared_inputs == 0  # every layer per sample
    assert shared["accumulation"].min() > 0.05  # the rays cross matter
    for key in ("rgb", "depth", "accumulation"):
        assert torch.allclose(shared[key], direct[key], atol=1e-5), key
    _toggle(model.share_activations, True)
    assert trunk.sharing == "always"  # the configured default comes back, training sharing too
