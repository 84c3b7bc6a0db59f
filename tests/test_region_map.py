"""Region maps (which bank / cell holds each pixel's surface point) against the tiling formula."""

import colorsys

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerf_loe.components.tiling import Tiling
from nerf_loe.inspection.region_map import region_colors
from nerf_loe.models.asmr_model import ASMRModelConfig
from nerf_loe.models.loe_model import LoEModelConfig

BOX = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))


def _setup(config):
    torch.manual_seed(0)
    return config.setup(scene_box=BOX, num_train_data=1, metadata={})


def _hit(model, point: list[float], depth: float = 2.0) -> dict:
    """The region map for one ray whose expected surface is ``point`` (world), fully opaque."""
    target = torch.tensor([point])
    direction = torch.tensor([[0.0, 0.0, -1.0]])
    origin = target - direction * depth
    outputs = {"depth": torch.tensor([[depth]]), "accumulation": torch.tensor([[1.0]])}
    return model._region_map(origin, direction, outputs)


def test_colours_follow_the_documented_hsv_rule():
    ids = torch.arange(50)
    want = [colorsys.hsv_to_rgb((k * 0.6180339887498949) % 1.0, 0.7, 0.95) for k in range(50)]
    assert torch.allclose(region_colors(ids), torch.tensor(want, dtype=torch.float32), atol=1e-6)


def test_loe_bank_map_is_the_bank_of_the_chosen_layer_at_the_surface():
    model = _setup(LoEModelConfig(banks=("2x2x2", "4x4x4", "4x4x4"), hidden_dim=8))
    assert model.region_level.value == 1  # the viewer's default, also headless
    # world (0.3, -0.8, 0.55) -> unit box (0.65, 0.1, 0.775); layer 1 has 8 cells per axis, banks
    # repeat every 4: cells (5, 0, 6) -> banks (1, 0, 2) -> flat 1*16 + 0*4 + 2 = 18
    outputs = _hit(model, [0.3, -0.8, 0.55])
    assert list(outputs) == ["bank_map"]
    assert torch.allclose(outputs["bank_map"], region_colors(torch.tensor([18])))
    model.region_level.value = 0  # layer 0: 2 cells per axis, cells (1, 0, 1) -> 4 + 0 + 1 = 5
    assert torch.allclose(_hit(model, [0.3, -0.8, 0.55])["bank_map"], region_colors(torch.tensor([5])))


def test_partition_map_is_the_region_and_linear_blending_the_heaviest_bank():
    model = _setup(LoEModelConfig(banks=("4x4x4", "4x4x4"), tiling="partition", hidden_dim=8))
    # unit (0.65, 0.1, 0.775) in a 4x4x4 partition: (2, 0, 3) -> 2*16 + 3 = 35
    assert torch.allclose(_hit(model, [0.3, -0.8, 0.55])["bank_map"], region_colors(torch.tensor([35])))
    tiling = Tiling([(4,)], blending="linear")
    # x = 0.3 -> 1.2 cells: tents centred at 0.5 and 1.5 weigh 0.3 and 0.7 -> bank 1
    assert tiling.dominant_bank(torch.tensor([[0.3]]), 0).tolist() == [1]


def test_asmr_cell_map_is_the_cell_of_the_level():
    model = _setup(ASMRModelConfig(bases=("2x2x2", "4x4x4", "2x2x2"), hidden_dim=8))
    # level 1: 8 cells per axis, unit (0.65, 0.1, 0.775) -> (5, 0, 6) -> 5*64 + 0*8 + 6 = 326
    assert torch.allclose(_hit(model, [0.3, -0.8, 0.55])["cell_map"], region_colors(torch.tensor([326])))


def test_maps_only_when_rendering_and_black_where_transparent():
    model = _setup(LoEModelConfig(banks=("2x2x2", "4x4x4"), hidden_dim=8, density_bias=3.0))
    toward, away = [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]  # into the (dense) box, and away from it
    rays = RayBundle(
        origins=torch.tensor([[0.0, 0.0, 3.0]]).expand(6, 3),
        directions=torch.tensor([toward] * 3 + [away] * 3),
        pixel_area=torch.ones(6, 1),
        camera_indices=None,
    )
    assert "bank_map" not in model.get_outputs(rays)  # training: no cost
    model.eval()
    with torch.no_grad():
        outputs = model.get_outputs(rays)
    assert (outputs["accumulation"][:3] > 0.9).all() and (outputs["accumulation"][3:] == 0).all()
    assert (outputs["bank_map"][:3] > 0.2).all() and (outputs["bank_map"][3:] == 0).all()


@pytest.mark.parametrize("level", [0, 1])
def test_region_ids_follow_the_tiling_on_random_points(level):
    tiling = Tiling([(2, 2, 2), (4, 4, 4)])
    x = torch.rand(200, 3)
    cells = torch.floor(x.double() * torch.tensor([2.0, 8.0][level])).long()
    banks = cells % torch.tensor([2, 4][level])
    n = [2, 4][level]
    assert torch.equal(tiling.dominant_bank(x, level), banks[:, 0] * n * n + banks[:, 1] * n + banks[:, 2])
    c = [2, 8][level]
    assert torch.equal(tiling.cell_index(x, level), cells[:, 0] * c * c + cells[:, 1] * c + cells[:, 2])
