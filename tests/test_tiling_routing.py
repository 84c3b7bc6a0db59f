"""Tiled-bank layers: exactness, index formula, routed vs naive reference, linear blending."""

import pytest
import torch
from torch import nn

from nerf_loe.components.routing import routed_linear
from nerf_loe.components.tiled_linear import TiledLinear
from nerf_loe.components.tiled_mlp import TiledMLP
from nerf_loe.components.tiling import Tiling
from nerf_loe.errors import ConfigError


def test_single_bank_equals_nn_linear_exactly():
    torch.manual_seed(0)
    layer = TiledLinear(7, 5, num_banks=1)
    reference = nn.Linear(7, 5)
    reference.weight.data.copy_(layer.weight[0])
    reference.bias.data.copy_(layer.bias)
    x = torch.randn(33, 7)
    selection = Tiling([(1, 1, 1)]).select(torch.rand(33, 3), 0)
    assert torch.equal(layer(x, selection), reference(x))


def test_hierarchical_indices_match_formula_on_hand_points():
    # 1-D, banks per layer 2, 4: C_0 = 2, C_1 = 8; idx_l = floor(x * C_l) mod B_l
    tiling = Tiling([(2,), (4,)])
    x = torch.tensor([[0.0], [0.124], [0.125], [0.49], [0.5], [0.625], [0.99], [1.0]])
    layer0 = tiling.select(x, 0).index[0].tolist()
    layer1 = tiling.select(x, 1).index[0].tolist()
    assert layer0 == [0, 0, 0, 0, 1, 1, 1, 1]
    # floor(8x) = 0, 0, 1, 3, 4, 5, 7, 7 (x = 1 is clamped into the last cell) -> mod 4
    assert layer1 == [0, 0, 1, 3, 0, 1, 3, 3]


def test_hierarchical_indices_2d_row_major_and_unique_per_finest_cell():
    tiling = Tiling([(2, 2), (4, 4)])
    x = torch.tensor([[0.3, 0.8], [1.0, 1.0]])
    # layer 0: cells (0, 1), (1, 1) -> row-major 0*2+1, 1*2+1
    assert tiling.select(x, 0).index[0].tolist() == [1, 3]
    # layer 1: floor(8x) = (2, 6) -> mod 4 = (2, 2) -> 10; (7, 7) -> (3, 3) -> 15
    assert tiling.select(x, 1).index[0].tolist() == [10, 15]
    centres = (
        torch.stack(torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij"), -1).reshape(-1, 2) + 0.5
    ) / 8
    codes = tiling.select(centres, 0).index[0] * 16 + tiling.select(centres, 1).index[0]
    assert codes.unique().numel() == 64  # mixed-radix: every finest cell has its own bank combination


def test_interleaved_and_partition_layouts():
    x = torch.tensor([[0.1], [0.3], [0.6], [0.9]])
    interleaved = Tiling([(2,), (4,)], layout="interleaved")  # both layers at the finest scale 8
    assert interleaved.select(x, 0).index[0].tolist() == [0, 0, 0, 1]  # floor(8x) = 0,2,4,7 mod 2
    partition = Tiling([(4,), (4,)], layout="partition")
    assert partition.select(x, 1).index[0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("blending", ["nearest", "linear"])
def test_routed_matches_naive_per_sample_reference(blending):
    torch.manual_seed(1)
    tiling = Tiling([(2, 2, 2), (3, 2, 4)], blending=blending)
    mlp = TiledMLP(6, 9, 4, tiling)
    x = torch.rand(200, 3)
    features = torch.randn(200, 6, requires_grad=True)
    out = mlp(features, x)

    def naive(feat):
        h = feat
        for i, layer in enumerate(mlp.layers):
            sel = tiling.select(x, i)
            weights = sel.weight if sel.weight is not None else torch.ones_like(sel.index, dtype=h.dtype)
            w = sum(
                wk[:, None, None] * layer.weight[ik] for ik, wk in zip(sel.index, weights, strict=True)
            )  # [n, out, in]
            h = torch.relu(torch.einsum("noi,ni->no", w, h) + layer.bias)
        return mlp.output(h)

    expected = naive(features)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), [features, *mlp.parameters()])
    mlp.zero_grad()
    grads_ref = torch.autograd.grad(expected.square().sum(), [features, *mlp.parameters()])
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def test_routed_linear_uses_the_selected_bank():
    weight = torch.stack([torch.eye(2), 2 * torch.eye(2), -torch.eye(2)])
    x = torch.ones(3, 2)
    out = routed_linear(x, weight, torch.tensor([2, 0, 1]))
    assert out.tolist() == [[-1, -1], [1, 1], [2, 2]]


def test_linear_blending_weights_sum_to_one_and_are_continuous():
    tiling = Tiling([(4, 4)], blending="linear")
    torch.manual_seed(2)
    x = torch.rand(500, 2)
    weights = tiling.select(x, 0).weight
    torch.testing.assert_close(weights.sum(0), torch.ones(500))
    # a linearly blended layer is continuous across a cell border (x0 = 0.5 is a border at scale 4)
    layer = TiledLinear(3, 2, 16)
    feat = torch.randn(1, 3)
    below = torch.tensor([[0.5 - 1e-5, 0.3]])
    above = torch.tensor([[0.5 + 1e-5, 0.3]])
    out_below = layer(feat, tiling.select(below, 0))
    out_above = layer(feat, tiling.select(above, 0))
    torch.testing.assert_close(out_below, out_above, atol=1e-3, rtol=0)
    nearest = Tiling([(4, 4)])
    jump = (layer(feat, nearest.select(below, 0)) - layer(feat, nearest.select(above, 0))).abs().max()
    assert jump > 1e-2  # whereas nearest blending jumps there


def test_bad_tiling_configs_are_reported():
    with pytest.raises(ConfigError, match="mix dimensions"):
        Tiling([(2, 2), (2, 2, 2)])
    with pytest.raises(ConfigError, match=">= 1"):
        Tiling([(0, 2)])
    with pytest.raises(ConfigError, match="3-D"):
        Tiling([(2, 2, 2)]).select(torch.rand(4, 2), 0)
