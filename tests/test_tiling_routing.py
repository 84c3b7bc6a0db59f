"""Tiled-bank layers: exactness, index formula, routed vs naive reference, linear blending.

Bank selection is checked against hand-computed values and against a slow per-sample, per-bank
Python loop written from the LoE paper's formulas (Hao et al., SIGGRAPH Asia 2022), never against the code's
own vectorised expressions.
"""

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from nerf_loe.components import routing
from nerf_loe.components.routing import Routes, rearrange, routed_linear
from nerf_loe.components.tiled_linear import TiledLinear
from nerf_loe.components.tiled_mlp import TiledMLP
from nerf_loe.components.tiling import Tiling
from nerf_loe.errors import ConfigError

# --- helpers ---------------------------------------------------------------------------------


def per_bank_weights(tiling: Tiling, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The code's selection as a dense [n, banks] table: each candidate's weight added to its bank.

    Order-independent (candidates that land on the same bank, e.g. clamped partition corners, add
    up), so it compares directly with a per-bank reference.
    """
    selection = tiling.select(x, layer)
    weight = selection.weight if selection.weight is not None else torch.ones_like(selection.index)
    dense = torch.zeros(x.shape[0], tiling.num_banks(layer), dtype=torch.float64)
    return dense.scatter_add_(1, selection.index.T, weight.T.double())


def hand_table(rows: list[dict[int, float]], num_banks: int) -> torch.Tensor:
    """Hand-written ``{bank: weight}`` per sample as a dense [n, banks] table (absent banks: 0)."""
    table = torch.zeros(len(rows), num_banks, dtype=torch.float64)
    for i, row in enumerate(rows):
        for bank, w in row.items():
            table[i, bank] = w
    return table


def paper_tent(q: float, j: int, n: int) -> float:
    """LoE's periodic tent for bank ``j`` of ``n`` along one axis: max(0, 1 - |(q + 1 - j) mod n - 1|).

    With a single bank along the axis it owns every position (weight 1); the closed form, which
    sees only one periodic image of the tent, would give frac(q) there.
    """
    if n == 1:
        return 1.0
    return max(0.0, 1.0 - abs((q + 1.0 - j) % n - 1.0))


def clamped_tent(q: float, j: int, n: int) -> float:
    """Non-repeating (partition) tent: the coordinate is held at the first / last bank centre."""
    return max(0.0, 1.0 - abs(min(max(q, 0.0), n - 1.0) - j))


def reference_weights(
    bank_counts: list[tuple[int, ...]], layout: str, blending: str, x: torch.Tensor, layer: int
) -> torch.Tensor:
    """Slow per-sample, per-bank [n, banks] weights straight from the formulas.

    Per axis the scale is C_l = B_0 * ... * B_l (hierarchical), C_L (interleaved) or B_l
    (partition), q = x * C. Nearest: bank coordinate floor(q) mod B_l (floor(q) for partitions).
    Linear: the documented convention centres tents on cell centres, i.e. the paper's kernel
    evaluated at q - 1/2 (the paper's q = alpha * p + beta with beta = -1/2). Banks are flattened
    row-major (numpy's ravel_multi_index).
    """
    counts = bank_counts[layer]
    if layout == "partition":
        scale = list(counts)
    else:
        last = len(bank_counts) - 1 if layout == "interleaved" else layer
        scale = [math.prod(c[axis] for c in bank_counts[: last + 1]) for axis in range(len(counts))]
    table = torch.zeros(x.shape[0], math.prod(counts), dtype=torch.float64)
    for i, point in enumerate(x.tolist()):
        q = [p * c for p, c in zip(point, scale, strict=True)]
        if blending == "nearest":
            cells = [math.floor(qa) for qa in q]
            coords = cells if layout == "partition" else [c % n for c, n in zip(cells, counts, strict=True)]
            table[i, int(np.ravel_multi_index(coords, counts))] = 1.0
            continue
        tent = clamped_tent if layout == "partition" else paper_tent
        for coords in itertools.product(*(range(n) for n in counts)):
            w = math.prod(tent(qa - 0.5, j, n) for qa, j, n in zip(q, coords, counts, strict=True))
            table[i, int(np.ravel_multi_index(coords, counts))] += w
    return table


# --- bank selection: nearest -----------------------------------------------------------------


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


# --- bank selection: linear blending, by hand -----------------------------------------------
# Tents are centred on cell centres: per axis s = x * C - 1/2, banks floor(s) and floor(s) + 1
# with weights 1 - frac(s) and frac(s); repeating tilings wrap the bank (mod B), partitions clamp.


def test_linear_blending_1d_repeating_wraps_around_by_hand():
    x = torch.tensor([[0.0], [0.05], [0.125], [0.3], [0.95], [1.0]])
    one_layer = Tiling([(4,)], blending="linear")  # C = 4
    expected = [
        {3: 0.5, 0: 0.5},  # s = -0.5: halfway between bank 0 and its left neighbour, bank 3
        {3: 0.3, 0: 0.7},  # s = -0.3
        {0: 1.0},  # s = 0: the centre of bank 0
        {0: 0.3, 1: 0.7},  # s = 0.7
        {3: 0.7, 0: 0.3},  # s = 3.3: the right neighbour of bank 3 is bank 0
        {3: 0.5, 0: 0.5},  # x = 1 (clamped to 1 - 1e-6): s = 3.5
    ]
    torch.testing.assert_close(per_bank_weights(one_layer, x, 0), hand_table(expected, 4), atol=1e-5, rtol=0)

    two_layers = Tiling([(2,), (4,)], blending="linear")  # layer 1: C = 8, B = 4: wraps inside the box too
    x = torch.tensor([[0.02], [0.5], [0.95]])
    expected = [
        {3: 0.34, 0: 0.66},  # s = 0.16 - 0.5 = -0.34
        {3: 0.5, 0: 0.5},  # s = 3.5: cells 3 and 4 -> banks 3 and 4 mod 4 = 0
        {3: 0.9, 0: 0.1},  # s = 7.1: cells 7 and 8 -> banks 3 and 0
    ]
    torch.testing.assert_close(per_bank_weights(two_layers, x, 1), hand_table(expected, 4), atol=1e-5, rtol=0)


def test_linear_blending_1d_partition_clamps_by_hand():
    tiling = Tiling([(4,)], layout="partition", blending="linear")  # C = B = 4
    x = torch.tensor([[0.0], [0.05], [0.3], [0.6], [0.95], [1.0]])
    expected = [
        {0: 1.0},  # s = -0.5: both corners clamp to bank 0 (0.5 + 0.5)
        {0: 1.0},  # s = -0.3: 0.3 + 0.7, both on bank 0
        {0: 0.3, 1: 0.7},  # s = 0.7: interior, as for repeating tilings
        {1: 0.1, 2: 0.9},  # s = 1.9
        {3: 1.0},  # s = 3.3: 0.7 + 0.3, the right corner clamps back to bank 3
        {3: 1.0},  # x = 1
    ]
    torch.testing.assert_close(per_bank_weights(tiling, x, 0), hand_table(expected, 4), atol=1e-5, rtol=0)


def test_linear_blending_2d_by_hand():
    # banks (2, 3), flat index 3 * i0 + i1; x = (0.1, 0.9): s = (0.2 - 0.5, 2.7 - 0.5) = (-0.3, 2.2)
    x = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.9, 0.4]])
    repeating = Tiling([(2, 3)], blending="linear")
    expected = [
        # axis 0: bank 1 (wrapped) 0.3, bank 0 0.7; axis 1: bank 2 0.8, bank 0 (wrapped) 0.2
        {3 * 0 + 2: 0.56, 3 * 0 + 0: 0.14, 3 * 1 + 2: 0.24, 3 * 1 + 0: 0.06},
        # s = (0.5, 1.0): axis 0 banks 0, 1 at 0.5 each; axis 1 bank 1 alone
        {3 * 0 + 1: 0.5, 3 * 1 + 1: 0.5},
        # s = (1.3, 0.7): axis 0 bank 1 0.7, bank 0 (wrapped) 0.3; axis 1 bank 0 0.3, bank 1 0.7
        {3 * 1 + 0: 0.21, 3 * 1 + 1: 0.49, 3 * 0 + 0: 0.09, 3 * 0 + 1: 0.21},
    ]
    torch.testing.assert_close(per_bank_weights(repeating, x, 0), hand_table(expected, 6), atol=1e-5, rtol=0)

    partition = Tiling([(2, 3)], layout="partition", blending="linear")
    expected = [
        {3 * 0 + 2: 1.0},  # axis 0 clamps to bank 0, axis 1 clamps to bank 2
        {3 * 0 + 1: 0.5, 3 * 1 + 1: 0.5},  # interior: same as repeating
        {3 * 1 + 0: 0.3, 3 * 1 + 1: 0.7},  # axis 0 clamps to bank 1
    ]
    torch.testing.assert_close(per_bank_weights(partition, x, 0), hand_table(expected, 6), atol=1e-5, rtol=0)


# --- bank selection: every layout against the slow per-bank reference -----------------------


@pytest.mark.parametrize("blending", ["nearest", "linear"])
@pytest.mark.parametrize("layout", ["hierarchical", "interleaved", "partition"])
def test_selection_matches_per_bank_reference_loop(layout, blending):
    bank_counts = [(2, 1, 3), (3, 2, 4), (2, 2, 2)]  # an axis with a single bank included
    tiling = Tiling(bank_counts, layout=layout, blending=blending)
    torch.manual_seed(3)
    x = torch.rand(100, 3)
    for layer in range(tiling.num_layers):
        got = per_bank_weights(tiling, x, layer)
        expected = reference_weights(bank_counts, layout, blending, x, layer)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        if blending == "linear":
            selection = tiling.select(x, layer)
            assert selection.index.shape == (8, 100)  # 2^d candidates
            assert selection.weight.min() >= 0 and selection.weight.max() <= 1
            torch.testing.assert_close(selection.weight.sum(0), torch.ones(100))


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


# --- routing and tiled layers ----------------------------------------------------------------


def test_routed_linear_uses_the_selected_bank():
    weight = torch.stack([torch.eye(2), 2 * torch.eye(2), -torch.eye(2)])
    x = torch.ones(3, 2)
    out = routed_linear(x, weight, torch.tensor([2, 0, 1]))
    assert out.tolist() == [[-1, -1], [1, 1], [2, 2]]


LAYOUTS = [
    ("slices", None),
    ("chunks", 1),
    ("chunks", 2),
    ("chunks", 3),
    ("chunks", 4),
    ("chunks", 7),
    ("chunks", 128),
]
"""Both layouts; chunk sizes that split banks into many chunks, pad them, or hold a bank in one."""


@pytest.mark.parametrize(("layout", "chunk"), LAYOUTS)
def test_routed_backward_matches_finite_differences(layout, chunk):
    # The hand-written backward against numerical derivatives (float64), with an unused bank; small
    # chunks put a bank's rows in several chunks and pad the last (bank 3: 3 rows in 2-row chunks).
    torch.manual_seed(0)
    routes = Routes(torch.tensor([3, 0, 3, 1, 0, 3, 1]), 4, chunk=chunk, layout=layout)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(routes.apply, (x, weight))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # slices: bank loop, grouped kernel
@pytest.mark.parametrize(("layout", "chunk"), LAYOUTS)
def test_routed_matmul_matches_a_loop_over_samples(layout, chunk, dtype):
    # Against the definition, one sample at a time: outputs and both gradients, in both layouts.
    torch.manual_seed(1)
    n, banks = 300, 9
    index = (torch.rand(n).pow(2) * (banks - 1)).long()  # uneven counts; bank 8 never used
    x = torch.randn(n, 8, dtype=dtype, requires_grad=True)  # rows of 16-byte units: the grouped kernel's
    weight = torch.randn(banks, 4, 8, dtype=dtype, requires_grad=True)
    assert routing._grouped(x, weight) == (dtype == torch.float32)
    routes = Routes(index, banks, chunk=chunk, layout=layout)
    if layout == "chunks":
        assert routes.num_chunks == sum(-(-int((index == b).sum()) // chunk) for b in range(banks))
    else:  # one slice per used bank, in bank order, covering the samples
        counts = [int((index == b).sum()) for b in range(banks)]
        assert routes.used == [b for b in range(banks) if counts[b]]
        assert routes.sizes == [c for c in counts if c]
    out = routes.apply(x, weight)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, weight), grad_out)
    ref = torch.stack([weight[index[i]] @ x[i] for i in range(n)])
    ref_grads = torch.autograd.grad(ref, (x, weight), grad_out)
    torch.testing.assert_close(out, ref)
    for got, expected in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, expected)
    assert torch.equal(grads[1][8], torch.zeros(4, 8, dtype=dtype))


def test_rearrange_moves_sorted_rows_by_hand():
    x = torch.tensor([[0.0], [1.0], [2.0]])
    first, second = Routes(torch.tensor([1, 0, 1]), 2), Routes(torch.tensor([0, 0, 1]), 2)
    assert rearrange(x, None, first).flatten().tolist() == [1, 0, 2]
    assert rearrange(first.pad(x), first, second).flatten().tolist() == [0, 1, 2]
    assert rearrange(second.pad(x), second, first).flatten().tolist() == [1, 0, 2]


@pytest.mark.parametrize(("layout", "chunk"), [("slices", None), ("chunks", 2), ("chunks", 3)])
def test_rearrange_keeps_each_sample_row_and_its_adjoint_is_the_reverse_move(layout, chunk):
    # Between sample order and two routings of the same samples, every way: each sample's row ends
    # in its slot of the target layout (slices: the samples sorted stably by bank, by a Python
    # sort), and <move(a, A, B), b> = <a, move(b, B, A)>, which the backward pass relies on.
    torch.manual_seed(3)
    n = 23
    indices = [torch.randint(0, 4, (n,)), torch.randint(0, 5, (n,))]
    layouts = [None, *(Routes(index, 5, chunk=chunk, layout=layout) for index in indices)]
    x = torch.randn(n, 2, dtype=torch.float64)
    for a in layouts:
        for b in layouts:
            moved = rearrange(x if a is None else a.pad(x), a, b)
            assert torch.equal(moved if b is None else b.unpad(moved), x)
            if layout == "slices" and b is not None:
                bank = indices[layouts.index(b) - 1].tolist()
                expected = sorted(range(n), key=lambda i: bank[i])
                assert torch.equal(moved, x[expected])
            u = torch.randn_like(x if a is None else a.pad(x))
            v = torch.randn_like(moved)
            torch.testing.assert_close((rearrange(u, a, b) * v).sum(), (u * rearrange(v, b, a)).sum())


@pytest.mark.parametrize("layout", ["slices", "chunks"])
def test_routing_zero_samples_gives_empty_output_and_zero_grads(layout):
    weight = torch.randn(3, 4, 5, requires_grad=True)
    out = Routes(torch.zeros(0, dtype=torch.long), 3, layout=layout).apply(torch.zeros(0, 5), weight)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert weight.grad is not None and torch.equal(weight.grad, torch.zeros_like(weight))


@pytest.mark.parametrize("blending", ["nearest", "linear"])
def test_tiled_mlp_zero_samples(blending):
    mlp = TiledMLP(6, 8, 4, Tiling([(2, 2, 2), (4, 4, 4)], blending=blending))
    out = mlp(torch.zeros(0, 6), torch.zeros(0, 3))
    assert out.shape == (0, 4)
    out.sum().backward()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in mlp.parameters())


def test_single_bank_equals_nn_linear_exactly():
    torch.manual_seed(0)
    layer = TiledLinear(7, 5, num_banks=1)
    reference = nn.Linear(7, 5)
    reference.weight.data.copy_(layer.weight[0])
    reference.bias.data.copy_(layer.bias)
    x = torch.randn(33, 7)
    selection = Tiling([(1, 1, 1)]).select(torch.rand(33, 3), 0)
    assert torch.equal(layer(x, selection), reference(x))


@pytest.mark.parametrize("residual", [False, True])
def test_kaiming_init_keeps_the_signal_through_depth_where_the_torch_default_loses_it(residual):
    """He's analysis: with weights of variance 2/fan_in and zero bias, a ReLU layer's pre-activation
    has the second moment of the previous one (E[z^2] = fan_in Var(w) E[relu(z')^2] = E[z'^2]);
    nn.Linear's default (variance 1/(3 fan_in)) divides it by about 6 a layer, so after four layers
    the trunk's input-dependent part is ~1/1300 of its first layer's and the biases dominate."""
    torch.manual_seed(0)
    tiling = Tiling([(2, 2, 2), (4, 4, 4), (4, 4, 4), (4, 4, 4)])
    n, width = 8192, 256
    x, features = torch.rand(n, 3), torch.randn(n, 64)
    moments = {}
    for init in ("kaiming", "torch"):
        mlp = TiledMLP(64, width, 4, tiling, residual_banks=residual, init=init)
        if init == "kaiming":  # hand-computed: uniform with std sqrt(2 / fan_in), zero bias
            for layer in mlp.layers:
                weight = layer.shared if residual else layer.weight
                expected = math.sqrt(2.0 / layer.in_features)
                assert weight.std().item() == pytest.approx(expected, rel=0.02)
                assert weight.abs().max().item() <= math.sqrt(3.0) * expected
                assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        seen = []
        hooks = [
            layer.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.square().mean().item()))
            for layer in mlp.layers
        ]
        with torch.no_grad():
            mlp(features, x)
        for hook in hooks:
            hook.remove()
        moments[init] = seen
    kaiming, default = moments["kaiming"], moments["torch"]
    assert all(0.5 < m / kaiming[0] < 2.0 for m in kaiming[1:]), kaiming
    # the default's second moment falls ~6x a layer until the bias floor (1/(3 fan_in)) holds it
    assert default[1] / default[0] < 0.3 and default[3] / default[0] < 0.05, default


@pytest.mark.parametrize("form", ["full", "modulated"])
@pytest.mark.parametrize("blending", ["nearest", "linear"])
def test_residual_banks_start_as_the_one_bank_network_exactly(blending, form):
    """Shared matrix + zero residuals: at initialisation the LoE trunk is its plain MLP (in float64,
    to rounding: routed matmuls on row subsets and blended corners may round differently)."""
    torch.manual_seed(0)
    tiling = Tiling([(2, 2, 2), (4, 4, 4)], blending=blending)
    loe = TiledMLP(6, 16, 4, tiling, residual_banks=True, residual_form=form).double()
    mlp = TiledMLP(6, 16, 4, Tiling([(1, 1, 1), (1, 1, 1)])).double()
    with torch.no_grad():
        for tiled, plain in zip(loe.layers, mlp.layers, strict=True):
            plain.weight.copy_(tiled.shared[None])
            plain.bias.copy_(tiled.bias)
        mlp.output.load_state_dict(loe.output.state_dict())
    x, features = torch.rand(500, 3, dtype=torch.float64), torch.randn(500, 6, dtype=torch.float64)
    torch.testing.assert_close(loe(features, x), mlp(features, x), rtol=0, atol=1e-12)
    assert loe.residual_penalty().item() == 0.0
    with torch.no_grad():  # a residual changes only the samples routed to its bank
        loe.layers[1].weight[5].fill_(0.1)
    assert loe.residual_penalty().item() == pytest.approx(0.01 / 64)
    bank = Tiling([(2, 2, 2), (4, 4, 4)]).select(x, 1).index[0]
    changed = ((loe(features, x) - mlp(features, x)).abs() > 1e-9).any(-1)
    if blending == "nearest":
        assert torch.equal(changed, bank == 5)


@pytest.mark.parametrize("blending", ["nearest", "linear"])
def test_modulated_banks_match_a_per_sample_loop_over_their_bank_maps(blending):
    """A modulated bank j is the affine map ``x -> diag(1 + s g_j) S x + b + s c_j``; the layer's
    output is each sample's map (nearest) or the tent-weighted sum of its corners' maps (linear),
    written here as a slow loop over samples and candidates."""
    torch.manual_seed(0)
    s = 0.3
    tiling = Tiling([(2, 2, 1)], blending=blending)
    layer = TiledLinear(5, 3, 4, residual=True, residual_scale=s, form="modulated").double()
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    x, positions = torch.randn(40, 5, dtype=torch.float64), torch.rand(40, 3, dtype=torch.float64)
    selection = tiling.select(positions, 0)
    weights = selection.weight if selection.weight is not None else torch.ones(1, 40, dtype=torch.float64)
    expected = torch.zeros(40, 3, dtype=torch.float64)
    for i in range(40):
        for k in range(selection.index.shape[0]):
            j = int(selection.index[k, i])
            matrix = torch.diag(1 + s * layer.weight[j, 0]) @ layer.shared
            bias = layer.bias + s * layer.weight[j, 1]
            expected[i] += weights[k, i] * (matrix @ x[i] + bias)
    torch.testing.assert_close(layer(x, selection), expected.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("blending", ["nearest", "linear"])
def test_modulated_banks_gradients_match_finite_differences(blending):
    """The modulated layer's written-out backward (per-bank sums of the lookups' gradients)."""
    torch.manual_seed(0)
    layer = TiledLinear(4, 3, 4, residual=True, residual_scale=0.5, form="modulated").double()
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    selection = Tiling([(2, 2, 1)], blending=blending).select(torch.rand(12, 3, dtype=torch.float64), 0)
    params = (x, layer.shared, layer.weight, layer.bias)

    def apply(x, shared, weight, bias):
        return torch.func.functional_call(
            layer, {"shared": shared, "weight": weight, "bias": bias}, (x, selection)
        )

    assert torch.autograd.gradcheck(apply, params)


def test_modulated_banks_are_plain_layers_in_macs_and_refuse_independent_banks():
    """One dense product a sample (plus the row scales), whatever the banks; modulation is a form of
    residual banks, so asking for it without them is a configuration error."""
    tiling = Tiling([(2, 2, 2), (4, 4, 4)])
    mlp = TiledMLP(6, 16, 4, Tiling([(1, 1, 1), (1, 1, 1)]))
    loe = TiledMLP(6, 16, 4, tiling, residual_banks=True, residual_form="modulated")
    assert loe.macs_per_sample() == mlp.macs_per_sample() + 16 + 16
    blended = TiledMLP(
        6, 16, 4, Tiling([(2, 2, 2)], blending="linear"), residual_banks=True, residual_form="modulated"
    )
    assert blended.macs_per_sample() == 6 * 16 + 16 + 8 * 2 * 16 + 16 * 4
    with pytest.raises(ConfigError, match="need residual banks"):
        TiledLinear(4, 3, 8, residual=False, form="modulated")


def test_unreleased_residual_banks_are_the_plain_mlp_and_train_no_residual():
    """Before the release step the trunk is its shared matrices alone (the plain MLP, whatever the
    residuals hold), and the residuals get no gradient; released, the residuals act."""
    torch.manual_seed(0)
    loe = TiledMLP(6, 16, 4, Tiling([(2, 2, 2), (4, 4, 4)]), residual_banks=True).double()
    with torch.no_grad():
        for layer in loe.layers:
            layer.weight.normal_()
    plain = nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    ).double()
    with torch.no_grad():
        for target, layer in zip([plain[0], plain[2]], loe.layers, strict=True):
            target.weight.copy_(layer.shared)
            target.bias.copy_(layer.bias)
        plain[4].load_state_dict(loe.output.state_dict())
    x, features = torch.rand(300, 3, dtype=torch.float64), torch.randn(300, 6, dtype=torch.float64)
    loe.released.fill_(False)
    out = loe(features, x)
    torch.testing.assert_close(out, plain(features), rtol=0, atol=1e-12)
    out.sum().backward()
    assert all(layer.weight.grad is None for layer in loe.layers)
    assert all(layer.shared.grad is not None for layer in loe.layers)
    loe.released.fill_(True)
    assert (loe(features, x) - plain(features)).abs().max() > 0.1


def test_loe_model_releases_its_residuals_at_the_configured_step():
    from types import SimpleNamespace

    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.utils.rich_utils import CONSOLE

    from nerf_loe.models.loe_model import LoEModelConfig

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    config = LoEModelConfig(
        banks=("2x2x2", "4x4x4"), hidden_dim=8, residual_banks=True, residual_release_step=5
    )
    model = config.setup(scene_box=box, num_train_data=1, metadata={})
    released = model.field.trunk.mlp.released
    assert not bool(released) and "field.trunk.mlp.released" in model.state_dict()
    callbacks = model.get_training_callbacks(TrainingCallbackAttributes(None, None, None, None))
    states = []
    for step in (0, 4, 5, 9):
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        states.append(bool(released))
    assert states == [False, False, True, True]
    # a run that ends before the release is told it trains the plain MLP
    for steps, told in ((5, True), (6, False)):
        trainer = SimpleNamespace(config=SimpleNamespace(max_num_iterations=steps))
        with CONSOLE.capture() as captured:
            model.get_training_callbacks(TrainingCallbackAttributes(None, None, None, trainer))
        assert ("trains the plain MLP throughout" in " ".join(captured.get().split())) == told
    with pytest.raises(
        ConfigError, match="residual-banks False.*add --pipeline.model.residual-release-step 0"
    ):
        LoEModelConfig(residual_banks=False, residual_release_step=5)
    with pytest.raises(ConfigError, match="must be >= 0"):
        LoEModelConfig(residual_banks=True, residual_release_step=-1)


def test_residual_scale_multiplies_the_residual_a_sample_sees():
    torch.manual_seed(0)
    layer = TiledLinear(3, 2, 4, residual=True, residual_scale=0.1).double()
    with torch.no_grad():
        layer.weight[2] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    out = routed_linear(x, layer.bank_weights(), torch.tensor([2])) + layer.bias
    by_hand = x[0] @ layer.shared.T + torch.tensor([0.1 * 1.0, 0.1 * 15.0], dtype=torch.float64) + layer.bias
    torch.testing.assert_close(out[0], by_hand)
    # gradients: d(g . out)/dS = g x^T, d/dR[2] = s g x^T, other banks' residuals untouched
    g = torch.tensor([2.0, -1.0], dtype=torch.float64)
    (out[0] @ g).backward()
    outer = torch.tensor([[2.0, 4.0, 6.0], [-1.0, -2.0, -3.0]], dtype=torch.float64)
    torch.testing.assert_close(layer.shared.grad, outer)
    torch.testing.assert_close(layer.weight.grad[2], 0.1 * outer)
    assert not layer.weight.grad[[0, 1, 3]].any()


def test_fixed_weights_form_the_banks_once_for_every_pass_within():
    # Within the scope every pass, with gradients too, uses the bank sums the first one formed (the
    # parameters must not change there: a change is not seen until the scope ends), and the
    # gradients reaching S and R are those of a pass outside any scope.
    torch.manual_seed(0)
    mlp = TiledMLP(5, 8, 2, Tiling([(2, 2, 2), (2, 2, 2)]), residual_banks=True, residual_scale=0.5).double()
    x, features = torch.rand(200, 3, dtype=torch.float64), torch.randn(200, 5, dtype=torch.float64)
    with torch.no_grad():
        for layer in mlp.layers:
            layer.weight.normal_()
    reference = mlp(features, x)
    reference.square().sum().backward()
    reference_grads = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    with mlp.fixed_weights():
        with torch.no_grad():
            assert torch.equal(mlp(features, x), reference)
        formed = [layer._formed for layer in mlp.layers]
        with_grad = mlp(features, x)
        assert all(layer._formed is f for layer, f in zip(mlp.layers, formed, strict=True))
        with torch.no_grad():
            mlp.layers[1].weight[3] += 1.0
            with mlp.fixed_weights():  # nested: still the outer scope's weights
                assert torch.equal(mlp(features, x), reference)
    torch.testing.assert_close(with_grad, reference, rtol=0, atol=0)
    with_grad.square().sum().backward()
    for grad, expected in zip((p.grad for p in mlp.parameters()), reference_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert not torch.allclose(mlp(features, x), reference)  # after the scope: the live weights
    assert all(not layer.reuse and layer._formed is None for layer in mlp.layers)


def test_residual_decay_adds_the_penalty_gradient_once_per_backward():
    """``decay_residuals(m)`` trains as if ``m x residual_penalty()`` were in the loss: gradients
    equal autograd's of ``loss + m * sum over layers of mean(R ** 2)`` (written out here)."""
    torch.manual_seed(0)
    tiling = Tiling([(2, 2, 2), (4, 4, 4)])
    decayed = TiledMLP(6, 16, 4, tiling, residual_banks=True, residual_scale=0.1).double()
    with torch.no_grad():
        for layer in decayed.layers:
            layer.weight.normal_()
    explicit = copy.deepcopy(decayed)
    decayed.decay_residuals(3.0)
    x, features = torch.rand(300, 3, dtype=torch.float64), torch.randn(300, 6, dtype=torch.float64)
    decayed(features, x).square().sum().backward()
    penalty = sum((layer.weight**2).mean() for layer in explicit.layers)
    (explicit(features, x).square().sum() + 3.0 * penalty).backward()
    for a, b in zip(decayed.parameters(), explicit.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(decayed.residual_penalty(), penalty.detach(), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="residual banks"):
        TiledMLP(6, 16, 4, tiling).decay_residuals(1.0)


@pytest.mark.parametrize("blending", ["nearest", "linear"])
@pytest.mark.parametrize(("layout", "chunk"), [("slices", None), ("chunks", 4), ("chunks", None)])
@pytest.mark.parametrize(
    ("tiling_layout", "counts"),
    [
        ("hierarchical", [(2, 2, 2), (3, 2, 4), (3, 2, 4)]),
        ("hierarchical", [(2, 2, 2), (1, 1, 1), (3, 2, 4)]),  # a one-bank layer mid-chain
        ("partition", [(3, 2, 4)] * 3),
    ],
)
def test_routed_matches_naive_per_sample_reference(
    blending, layout, chunk, tiling_layout, counts, monkeypatch
):
    # routing (sort, per-bank matmul, layouts carried from layer to layer; partition layers share
    # one) vs materialised per-sample weight matrices; the selection itself is checked against the
    # reference loop above
    monkeypatch.setattr(routing, "LAYOUT", layout)
    monkeypatch.setattr(routing, "CHUNK_ROWS", chunk)
    torch.manual_seed(1)
    tiling = Tiling(counts, tiling_layout, blending)
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


def test_a_compiled_trunk_leaves_routing_eager_and_matches_the_eager_one():
    # torch 2.14's grouped-matmul meta kernel refuses CPU float32, so tracing the routed product
    # fails; routing is excluded from compilation and the rest of the trunk compiles around it
    # (the "eager" backend traces with dynamo and fake tensors, as inductor does, in a second)
    torch.manual_seed(2)
    mlp = TiledMLP(8, 16, 4, Tiling([(2, 2, 2), (4, 4, 4)]), residual_banks=True)
    for layer in mlp.layers:
        nn.init.normal_(layer.weight, std=0.1)  # residuals away from zero: the banks differ
    x, features = torch.rand(300, 3), torch.randn(300, 8)
    torch._dynamo.reset()
    compiled = torch.compile(mlp, backend="eager", dynamic=True)
    out = compiled(features, x)
    grads = torch.autograd.grad(out.square().sum(), list(mlp.parameters()))
    expected = mlp(features, x)
    grads_ref = torch.autograd.grad(expected.square().sum(), list(mlp.parameters()))
    torch.testing.assert_close(out, expected)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.cuda
def test_trunk_on_cuda_matches_the_cpu():
    """The CUDA path (chunked layout, the tiling's constants copied to the device once) gives the
    CPU's outputs and gradients (slices); its CPU twin is the layout test above."""
    torch.manual_seed(4)
    trunk = TiledMLP(
        6, 16, 4, Tiling([(2, 2, 2), (4, 4, 4), (4, 4, 4)]), residual_banks=True, residual_scale=0.1
    )
    for layer in trunk.layers:
        nn.init.normal_(layer.weight)  # residuals away from zero, so every bank differs
    x, features = torch.rand(3000, 3), torch.randn(3000, 6)
    results = []
    for device in ("cpu", "cuda", "cuda"):  # twice on CUDA: the second call reuses the cached constants
        model = trunk.to(device)
        model.zero_grad()
        out = model(features.to(device), x.to(device))
        out.square().sum().backward()
        results.append([out.cpu(), *(p.grad.cpu() for p in model.parameters())])
    for got in results[1:]:
        for g, ref in zip(got, results[0], strict=True):
            torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-4)


def test_tiling_constants_first_made_in_inference_mode_serve_autograd_later():
    # the tiling's device constants are built once and reused: the first call may come from a
    # render under inference mode, a later one from training, where autograd saves the scale
    tiling = Tiling([(13,)], blending="linear")  # a count no other test uses: the cache starts cold
    x = torch.tensor([0.3, 0.7], dtype=torch.float64)[:, None]
    with torch.inference_mode():
        tiling.select(x, 0)
    x.requires_grad_()
    tiling.select(x, 0).weight[1].sum().backward()  # the upper tent weight is frac(13 x - 1/2)
    torch.testing.assert_close(x.grad, torch.full_like(x, 13.0))


# --- configuration errors --------------------------------------------------------------------


def test_bad_tiling_configs_are_reported():
    with pytest.raises(ConfigError, match="mix dimensions"):
        Tiling([(2, 2), (2, 2, 2)])
    with pytest.raises(ConfigError, match=">= 1"):
        Tiling([(0, 2)])
    with pytest.raises(ConfigError, match="3-D"):
        Tiling([(2, 2, 2)]).select(torch.rand(4, 2), 0)


def test_chunk_size_follows_the_pass_size():
    # Unset, the chunk is chosen per layout: a small pass (about 17 rows per bank) takes 32-row
    # chunks (4 chunks: 128 padded rows + 4 weight copies, against 256 rows for 64-row chunks); a
    # large one (2 banks of 2000 rows) 256-row chunks (16 chunks, 4096 rows, against 32 of 128).
    # Outputs equal the per-sample definition either way.
    torch.manual_seed(2)
    weight = torch.randn(4, 3, 5, dtype=torch.float64)
    for n, expected_chunk in ((70, 32), (4000, 256)):
        index = torch.arange(n) % 4 if n < 100 else torch.arange(n) // 2000
        x = torch.randn(n, 5, dtype=torch.float64)
        routes = Routes(index, 4, layout="chunks")
        assert routes.chunk == expected_chunk
        ref = torch.stack([weight[index[i]] @ x[i] for i in range(n)])
        torch.testing.assert_close(routes.apply(x, weight), ref)
