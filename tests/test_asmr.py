"""ASMR network: digits, SIREN initialisation, the direct path against a per-sample loop written from
the paper's formulas, and the shared path against the direct one (also across parameter changes)."""

import math
from fractions import Fraction

import pytest
import torch

from nerf_loe.components.asmr import ASMR, _CellTable
from nerf_loe.components.siren import Siren
from nerf_loe.components.tiling import Tiling
from nerf_loe.errors import ConfigError


def _digits_by_hand(value: float, bases: list[int]) -> tuple[list[int], float]:
    """Mixed-radix digits of a coordinate in [0, 1), exactly (rationals): repeated multiply-and-floor."""
    digits, rest = [], Fraction(min(value, 1.0 - 1e-6))
    for b in bases:
        rest *= b
        digit = math.floor(rest)
        digits.append(digit)
        rest -= digit
    return digits, float(rest)


def test_digits_rebuild_the_coordinate_at_borders_and_the_top_end():
    bases = [(2, 4, 2), (4, 2, 8), (2, 2, 2)]  # powers of two: every cell border is a float exactly
    net = ASMR(bases, hidden_dim=8, out_dim=1)
    c = [2 * 4 * 2, 4 * 2 * 2, 2 * 8 * 2]  # finest cells per axis
    borders = [[j / c[a] for j in range(c[a])] for a in range(3)]
    points = [[borders[0][k % c[0]], borders[1][k % c[1]], borders[2][k % c[2]]] for k in range(60)]
    points += [[1 - 1e-9] * 3, [0.0] * 3, [0.999, 0.5, 0.25]] + torch.rand(200, 3).tolist()
    x = torch.tensor(points, dtype=torch.float64)
    inputs = net.level_inputs(x)
    for i, point in enumerate(points):
        for axis in range(3):
            axis_bases = [level[axis] for level in bases]
            want, rest = _digits_by_hand(point[axis], axis_bases)
            got = [round(float(inputs[level][i, axis]) * max(b - 1, 1)) for level, b in enumerate(axis_bases)]
            assert got == want, (point, axis)
            # the mixed-radix number and the remainder give back the coordinate
            cell = 0
            for digit, b in zip(got, axis_bases, strict=True):
                cell = cell * b + digit
            rebuilt = (cell + float(inputs[-1][i, axis])) / math.prod(axis_bases)
            assert rebuilt == pytest.approx(min(point[axis], 1 - 1e-6), abs=1e-12)
    assert all(inputs[level][60].tolist() == [1.0] * 3 for level in range(3))  # x -> 1: every last digit


def test_place_values_sum_to_the_position():
    net = ASMR([(2, 4, 2), (4, 2, 8), (2, 2, 2)], hidden_dim=8, out_dim=1, digits="place")
    x = torch.rand(500, 3, dtype=torch.float64)
    assert torch.allclose(sum(net.level_inputs(x)), x, atol=1e-12)


def test_pixel_centre_digits_are_the_papers_integer_digits():
    """The paper digitises integer pixel indices: floor(p / (N / C_l)) mod B_l."""
    bases = [(4, 2), (4, 8), (2, 4)]
    size = (32, 64)
    net = ASMR(bases, hidden_dim=8, out_dim=1, remainder=False)
    p = torch.stack(torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij"), -1).reshape(
        -1, 2
    )
    inputs = net.level_inputs((p + 0.5) / torch.tensor(size))
    cumulative = [1, 1]
    for level, b in enumerate(bases):
        for axis in range(2):
            cumulative[axis] *= b[axis]
            paper = (p[:, axis] // (size[axis] // cumulative[axis])) % b[axis]
            assert torch.equal(inputs[level][:, axis], paper.float() / (b[axis] - 1))


def _reference(net: ASMR, point: list[float]) -> torch.Tensor:
    """One sample by the formulas: h_0 = d_0; h_{k+1} = sin(w0 (W_k h_k + b_k + M_k(u_{k+1}))); out."""
    bases = net.tiling.bank_counts
    per_axis = [_digits_by_hand(v, [level[a] for level in bases]) for a, v in enumerate(point)]
    place = [[math.prod(b[a] for b in bases[: k + 1]) for a in range(len(point))] for k in range(len(bases))]

    def scale(level: int, axis: int) -> float:  # digit: d / (B - 1); place: d / C_l
        return place[level][axis] if net.digits == "place" else max(bases[level][axis] - 1, 1)

    u = [
        torch.tensor(
            [per_axis[a][0][level] / scale(level, a) for a in range(len(point))], dtype=torch.float64
        )
        for level in range(len(bases))
    ]
    if net.remainder:
        finest = place[-1] if net.digits == "place" else [1] * len(point)
        u.append(
            torch.tensor([rest / finest[a] for a, (_, rest) in enumerate(per_axis)], dtype=torch.float64)
        )
    h = u[0].double()
    for k, layer in enumerate(net.layers):
        modulator = net.modulators[k]
        if hasattr(modulator, "linear"):  # w0 V d for digits, V r for the remainder and place values
            gain = 1.0 if net.digits == "place" or (net.remainder and k == len(net.layers) - 1) else net.w0
            m = gain * modulator.linear.weight.double() @ u[k + 1].double()
        else:  # a SIREN written out
            m = u[k + 1].double()
            for j, inner in enumerate(modulator.layers):
                m = inner.weight.double() @ m + inner.bias.double()
                if j < len(modulator.layers) - 1:
                    m = torch.sin(net.w0 * m)
        h = torch.sin(net.w0 * (layer.weight.double() @ h + layer.bias.double() + m))
    return net.output.weight.double() @ h + net.output.bias.double()


@pytest.mark.parametrize(
    ("modulator", "digits"), [("linear", "digit"), ("nonlinear", "digit"), ("linear", "place")]
)
def test_direct_path_follows_the_formulas_sample_by_sample(modulator, digits):
    torch.manual_seed(0)
    bases = [(2, 2, 2), (2, 4, 2), (4, 2, 2)]
    net = ASMR(bases, hidden_dim=16, out_dim=4, modulator=modulator, digits=digits).double()
    points = torch.rand(25, 3, dtype=torch.float64)
    with torch.no_grad():
        got = net.forward_direct(points)
    want = torch.stack([_reference(net, p) for p in points.tolist()])
    assert torch.allclose(got, want, atol=1e-9)


def _encoded(v: list[float], frequencies: int, lowest: int = 0) -> torch.Tensor:
    """nerfstudio's NeRF encoding written out: sin(pi 2^j v_a), j = lowest .. lowest + frequencies - 1,
    for each axis a (axis-major, j fastest), then the cosines alike, then v."""
    angles = [math.pi * 2**j * value for value in v for j in range(lowest, lowest + frequencies)]
    return torch.tensor(
        [math.sin(a) for a in angles] + [math.cos(a) for a in angles] + v, dtype=torch.float64
    )


# the finest level has 8 x 16 x 4 cells: the remainder's bands end at pi 2^4 (2^4 >= 16 cells)
@pytest.mark.parametrize(("remainder_frequencies", "lowest", "fine_dim"), [(5, 0, None), (2, 3, 6)])
def test_relu_backbone_follows_its_formulas_sample_by_sample(remainder_frequencies, lowest, fine_dim):
    """h_0 = g(c_0); h_{k+1} = relu(W_k h_k + b_k + V_k g(c_{k+1})); the remainder layer reads g(x)
    at the remainder_frequencies highest bands; c_k the level-k cell centre from hand-computed
    digits, g with pi 2^j for 2^j below the level's cells per axis."""
    torch.manual_seed(0)
    bases = [(2, 2, 2), (2, 4, 2), (4, 2, 2)]
    net = ASMR(
        bases, 16, 4, backbone="relu", remainder_frequencies=remainder_frequencies, fine_dim=fine_dim
    ).double()
    assert [layer.out_features for layer in net.layers] == [16, 16, fine_dim or 16]
    points = torch.rand(25, 3, dtype=torch.float64)
    with torch.no_grad():
        got = net.forward_direct(points)
    want = []
    for point in points.tolist():
        per_axis = [_digits_by_hand(v, [level[a] for level in bases]) for a, v in enumerate(point)]
        inputs = []
        for level in range(len(bases)):
            counts = [math.prod(b[a] for b in bases[: level + 1]) for a in range(3)]
            index = [0] * 3  # the level's cell, per axis, from the digits
            for a in range(3):
                for k in range(level + 1):
                    index[a] = index[a] * bases[k][a] + per_axis[a][0][k]
            centre = [(index[a] + 0.5) / counts[a] for a in range(3)]
            inputs.append(_encoded(centre, sum(1 for j in range(10) if 2**j < max(counts))))
        inputs.append(_encoded(point, remainder_frequencies, lowest))
        h = inputs[0]
        for k, layer in enumerate(net.layers):
            m = net.modulators[k].linear.weight.double() @ inputs[k + 1]
            h = torch.relu(layer.weight.double() @ h + layer.bias.double() + m)
        want.append(net.output.weight.double() @ h + net.output.bias.double())
    assert torch.allclose(got, torch.stack(want), atol=1e-9)


CASES = [
    ([(4,), (4,), (8,)], False, 1),  # 1-D raster: a 128-sample signal
    ([(2, 4), (4, 2), (4, 4)], False, 2),  # 2-D raster, unequal bases
    ([(2, 2, 2), (4, 4, 4), (4, 4, 4)], True, 3),  # 3-D continuous, with the remainder
]


@pytest.mark.parametrize("fine_dim", [32, 12])
@pytest.mark.parametrize(("bases", "remainder", "dim"), CASES)
@pytest.mark.parametrize(
    ("modulator", "digits", "backbone"),
    [
        ("linear", "digit", "siren"),
        ("nonlinear", "digit", "siren"),
        ("linear", "place", "siren"),
        ("linear", "place", "relu"),
    ],
)
def test_shared_path_equals_direct_path(bases, remainder, dim, modulator, digits, backbone, fine_dim):
    torch.manual_seed(1)
    net = ASMR(
        bases,
        32,
        3,
        modulator=modulator,
        remainder=remainder,
        digits=digits,
        dense_cells=64,
        backbone=backbone,
        fine_dim=fine_dim,
    )
    x = torch.rand(3000, dim)
    with torch.no_grad():
        direct = net.forward_direct(x)
        first = net(x)  # builds the tables (dense for levels of <= 64 cells, cached touched cells finer)
        net.reset_counters()
        again = net(x[:1000])  # served from the tables
    assert (first - direct).abs().max() < 1e-5
    assert (again - direct[:1000]).abs().max() < 1e-5
    assert net.table_bytes() > 0
    # from the tables, only what follows the finest cell ran: the output layer (and the remainder's
    # modulator) per input, or without remainder the output per distinct cell and the finest
    # modulation per digit value (siren) or per cell-centre coordinate of each axis, plus the
    # row of cell 0 (relu: its encoding is a sum of one-coordinate encodings)
    # the last layer is fine_dim wide: its modulator reads the remainder (or the finest level)
    width = net.encodings[-1].get_out_dim() if backbone == "relu" else dim
    last_modulator = width * fine_dim if modulator == "linear" else (width * 32 + 32 * 32 + 32 * fine_dim)
    if remainder:
        assert net.shared_macs == 1000 * (fine_dim * 3 + last_modulator)
    else:
        cells = len(torch.unique(net.tiling.cells(x[:1000], len(bases) - 1), dim=0))
        per_axis = [math.prod(b[axis] for b in bases) for axis in range(dim)]
        rows = sum(per_axis) + 1 if backbone == "relu" else math.prod(bases[-1])
        assert net.shared_macs == cells * fine_dim * 3 + rows * last_modulator
    net.sharing = "always"  # with gradients: deduplicated, no tables
    assert (net(x) - direct).abs().max() < 1e-5


def test_a_tiny_cache_limit_stays_exact():
    torch.manual_seed(2)
    net = ASMR([(2, 2, 2), (4, 4, 4), (4, 4, 4)], hidden_dim=16, out_dim=2, dense_cells=8, lazy_cells=50)
    x = torch.rand(2000, 3)
    with torch.no_grad():
        direct = net.forward_direct(x)
        for chunk in range(4):
            part = slice(500 * chunk, 500 * (chunk + 1))
            assert (net(x[part]) - direct[part]).abs().max() < 1e-5
            assert all(len(t.values) <= 50 for level, t in net._tables.items() if level > 0)


def test_the_cell_cache_merges_its_sorted_keys_and_finds_every_row_against_a_dict():
    """Inserts merge new keys into the sorted ones (no re-sort); a dict is the reference."""
    generator = torch.Generator().manual_seed(4)
    table, held = _CellTable(torch.zeros(0, 2), cache=True), {}
    for _ in range(8):
        cells = torch.randperm(400, generator=generator)[:60]
        cells = torch.tensor(sorted(c for c in cells.tolist() if c not in held), dtype=torch.long)
        values = torch.randn(len(cells), 2, generator=generator)
        table.insert(cells, values, limit=10_000)
        held.update(zip(cells.tolist(), values.unbind(0), strict=True))
        assert bool((table.keys[1:] > table.keys[:-1]).all()) and table.used == len(held)
    keys = torch.tensor(sorted(held))
    values, found = table.lookup(keys)
    assert bool(found.all())
    assert torch.equal(values, torch.stack([held[k] for k in keys.tolist()]))
    absent = torch.tensor(sorted(set(range(400)) - set(held)), dtype=torch.long)
    assert not bool(table.lookup(absent)[1].any())


def test_the_cache_grows_over_many_chunks_and_then_serves_every_cell():
    torch.manual_seed(3)
    net = ASMR([(2, 2, 2), (4, 4, 4), (4, 4, 4)], hidden_dim=16, out_dim=2, dense_cells=8, fine_dim=8)
    x = torch.rand(3000, 3)
    with torch.no_grad():
        direct = net.forward_direct(x)
        for part in x.split(150):  # twenty inserts: the row buffer regrows several times
            net(part)
        finest = net._tables[2]
        cells = net.tiling.cell_index(x, 2)
        assert finest.used == len(torch.unique(cells))  # each touched cell held once
        net.reset_counters()
        again = net(x.flip(0))
    assert (again.flip(0) - direct).abs().max() < 1e-5
    # every finest cell came from the cache: only the remainder's modulator and the output ran
    assert net.shared_macs == 3000 * (8 * 2 + 3 * 8)


def test_complete_tables_are_built_in_evaluation_only():
    """In training the parameters change every step, so a no-grad pass (the early-stopping
    pre-pass) computes only the cells it touches even on levels small enough for a complete table;
    evaluation, whose parameters stay put over many images, builds the complete table."""
    torch.manual_seed(4)
    net = ASMR([(2, 2, 2), (4, 4, 4), (4, 4, 4)], hidden_dim=16, out_dim=2, dense_cells=512)
    x = torch.rand(50, 3) * 0.01  # one cell at every level: level 1's 512 cells are 1/8 wide
    with torch.no_grad():
        direct = net.forward_direct(x)
        assert (net.train()(x) - direct).abs().max() < 1e-5
        assert net._tables[1].used == 1  # the touched cell, not the 512 of the level
        net.invalidate_tables()
        assert (net.eval()(x) - direct).abs().max() < 1e-5
        assert net._tables[1].used == len(net._tables[1].values) == 512


def test_tables_follow_optimizer_steps_and_checkpoint_loads():
    torch.manual_seed(3)
    bases = [(2, 2, 2), (4, 4, 4), (4, 4, 4)]
    net = ASMR(bases, hidden_dim=16, out_dim=2, dense_cells=512)
    x = torch.rand(1000, 3)
    with torch.no_grad():
        before = net(x)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.forward_direct(x).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        after, direct = net(x), net.forward_direct(x)
    assert (after - before).abs().max() > 1e-4  # the step changed the output ...
    assert (after - direct).abs().max() < 1e-5  # ... and the tables were rebuilt

    other = ASMR(bases, hidden_dim=16, out_dim=2, dense_cells=512)
    with torch.no_grad():
        other(x)  # tables of its own initialisation
        other.load_state_dict(net.state_dict())
        assert (other(x) - direct).abs().max() < 1e-5
        other(x)
        other.load_state_dict(ASMR(bases, 16, 2).state_dict(), assign=True)  # new tensors
        assert (other(x) - other.forward_direct(x)).abs().max() < 1e-5

        net(x)  # float32 tables, then a dtype move
        wide = net.double()
        assert (wide(x.double()) - wide.forward_direct(x.double())).abs().max() < 1e-12

        wide(x.double())  # a write autograd's version counters do not see, then the documented call
        wide.output.bias.data += 1.0
        wide.layers[0].weight.data *= 2.0
        wide.invalidate_tables()
        assert (wide(x.double()) - wide.forward_direct(x.double())).abs().max() < 1e-12


def test_asmr_nerf_drops_its_tables_after_each_fused_optimizer_step():
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.engine.optimizers import Optimizers

    from nerf_loe.method_configs.asmr import asmr_nerf

    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    model = asmr_nerf.config.pipeline.model.setup(scene_box=box, num_train_data=1, metadata={})
    optimizers = Optimizers(asmr_nerf.config.optimizers, model.get_param_groups())
    optimizers.optimizers["fields"].param_groups[0]["lr"] = 1e-2  # past the schedule's warm-up
    assert optimizers.optimizers["fields"].defaults["fused"] is True
    callbacks = model.get_training_callbacks(TrainingCallbackAttributes(optimizers, None, None, None))
    trunk, x = model.field.trunk, torch.rand(2000, 3)
    with torch.no_grad():
        trunk(x)  # tables built, as the grid's density queries build them
    trunk(x).square().mean().backward()
    optimizers.optimizer_step_all()
    with torch.no_grad():
        stale, direct = trunk(x), trunk.forward_direct(x)
        assert (stale - direct).abs().max() > 1e-4  # the fused step left the version counters alone
        for callback in callbacks:
            callback.run_callback_at_location(0, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        assert (trunk(x) - direct).abs().max() < 1e-5


@pytest.mark.parametrize(
    ("backbone", "modulator", "fine_dim"),
    [
        ("siren", "linear", None),
        ("siren", "nonlinear", None),
        ("relu", "linear", 8),
        ("relu", "nonlinear", 8),
    ],
)
def test_gradients_reach_every_modulator_and_match_between_paths(backbone, modulator, fine_dim):
    """Training with ``sharing="always"`` (asmr-nerf's default) gives the direct path's gradients."""
    torch.manual_seed(4)
    net = ASMR(
        [(2, 2, 2), (4, 4, 4), (2, 2, 2)],
        hidden_dim=16,
        out_dim=2,
        modulator=modulator,
        sharing="always",
        backbone=backbone,
        remainder_frequencies=3,
        fine_dim=fine_dim,
    )
    x = torch.rand(500, 3)
    net.forward_direct(x).square().mean().backward()
    direct = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net(x).square().mean().backward()
    for k, modulator_module in enumerate(net.modulators):
        assert all(p.grad is not None and p.grad.abs().max() > 0 for p in modulator_module.parameters()), k
    for got, want in zip((p.grad for p in net.parameters()), direct, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_siren_initialisation_keeps_the_activation_spread_with_depth():
    """sin of a unit-variance phase is arcsine-distributed with std 1/sqrt(2) in every layer."""
    torch.manual_seed(5)
    net = Siren(2, 256, 1, num_layers=9)
    h = torch.rand(8192, 2) * 2 - 1
    spreads = []
    for layer in net.layers[:-1]:
        h = torch.sin(net.sine.w0 * layer(h))
        spreads.append(float(h.std()))
    assert all(0.62 < s < 0.78 for s in spreads[1:]), spreads
    assert abs(spreads[-1] - spreads[1]) < 0.05

    asmr = ASMR([(2, 2)] * 4 + [(2, 2)] * 4, hidden_dim=256, out_dim=1, remainder=False)
    u = asmr.level_inputs(torch.rand(8192, 2))
    h = u[0]
    for k, layer in enumerate(asmr.layers):
        h = torch.sin(asmr.w0 * (layer(h) + asmr.modulators[k](u[k + 1])))
        assert 0.62 < float(h.std()) < 0.78, k


def test_relu_backbone_is_he_initialised_unless_asked_for_torchs_default():
    """He's uniform init by hand: std sqrt(2 / fan_in), bound sqrt(3) times that, zero bias;
    ``init="torch"`` keeps nn.Linear's bound 1 / sqrt(fan_in) and a non-zero bias."""
    torch.manual_seed(0)
    bases = [(2, 2, 2), (4, 4, 4), (4, 4, 4)]
    he = ASMR(bases, hidden_dim=256, out_dim=4, backbone="relu", init="kaiming")
    default = ASMR(bases, hidden_dim=256, out_dim=4, backbone="relu", init="torch")
    for layer, old in zip(he.layers, default.layers, strict=True):
        fan_in = layer.in_features
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.03)
        assert layer.weight.abs().max().item() <= math.sqrt(6.0 / fan_in)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        assert old.weight.abs().max().item() <= 1.0 / math.sqrt(fan_in)
        assert old.bias.abs().max().item() > 0


def test_shared_macs_of_a_raster_follow_the_profile_formula():
    """Layer k runs once per level-k cell, modulator k once per digit value of level k+1, the output
    once per pixel: the paper's profiler (without its bias and addition terms)."""
    bases = [(4, 4), (4, 2), (2, 8)]
    h, out = 24, 3
    net = ASMR(bases, hidden_dim=h, out_dim=out, remainder=False)
    size = (32, 64)
    p = torch.stack(torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij"), -1).reshape(
        -1, 2
    )
    with torch.no_grad():
        net((p + 0.5) / torch.tensor(size))
    cells = [16, 16 * 8, 32 * 64]  # level-k cells: prod of C_k over both axes
    want = 2 * h * cells[0] + h * h * cells[1]  # layers 0 and 1
    want += 2 * h * (4 * 2) + 2 * h * (2 * 8)  # modulators of levels 1 and 2, per digit value
    want += h * out * cells[2]  # output per pixel
    assert net.shared_macs == want and net.shared_macs_per_sample() == want / (32 * 64)
    assert net.macs_per_sample() == 2 * h + h * h + 2 * (2 * h) + h * out


def test_bad_options_are_reported():
    with pytest.raises(ConfigError, match="sharing"):
        ASMR([(2, 2)], 8, 1, sharing="sometimes")
    with pytest.raises(ConfigError, match="modulator"):
        ASMR([(2, 2)], 8, 1, modulator="cubic")
    with pytest.raises(ConfigError, match="digits"):
        ASMR([(2, 2)], 8, 1, digits="binary")
    with pytest.raises(ConfigError, match="two levels"):
        ASMR([(2, 2)], 8, 1, remainder=False)
    with pytest.raises(ConfigError, match="hidden_dim"):
        ASMR([(2, 2)], 0, 1)
    with pytest.raises(ConfigError, match="fine_dim"):
        ASMR([(2, 2)], 8, 1, fine_dim=0)
    with pytest.raises(ConfigError, match="lazy_cells"):
        ASMR([(2, 2)], 8, 1, lazy_cells=-1)
    with pytest.raises(ConfigError, match="cell_jitter must be >= 0"):
        ASMR([(2, 2)], 8, 1, cell_jitter=-0.5)
    with pytest.raises(ConfigError, match="2-D but positions have 3 coordinates"):
        ASMR([(2, 2)], 8, 1)(torch.rand(5, 3))


def test_shared_equals_direct_on_cell_borders_the_top_end_and_outside_the_box():
    torch.manual_seed(5)
    bases = [(2, 2), (4, 4), (2, 2)]  # 16 cells per axis at the finest level
    net = ASMR(bases, 16, 2, dense_cells=4)
    borders = torch.arange(17, dtype=torch.float32) / 16
    grid = torch.stack(torch.meshgrid(borders, borders, indexing="ij"), -1).reshape(-1, 2)
    outside = torch.tensor([[-0.2, 0.5], [1.3, 0.5], [0.5, -1.0], [2.0, 2.0], [1 - 1e-7, 1.0]])
    x = torch.cat([grid, outside])
    with torch.no_grad():
        assert (net(x) - net.forward_direct(x)).abs().max() < 1e-5
        # outside the box is the box's edge: clamped, as every tiling does
        assert torch.equal(net(outside[:2]), net(torch.tensor([[0.0, 0.5], [1.0, 0.5]])))


def test_the_top_end_is_the_last_cell_in_half_precision():
    tiling = Tiling([(2,), (4,), (4,)], "hierarchical")
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert tiling.cells(torch.ones(1, 1, dtype=dtype), 2).item() == 31


def test_raster_cli_fits_both_networks_and_reports_sharing(tmp_path):
    from nerf_loe.benchmarks.raster import RasterArgs, report, run

    args = RasterArgs(
        size=16, bases=("4x4", "2x2", "2x2"), hidden_dim=16, steps=40, lr=1e-2, out=tmp_path / "r"
    )
    rows = run(args)
    asmr, siren = rows["asmr"], rows["siren"]
    for row in (asmr, siren):
        assert row["train_curve"][-1] > row["train_curve"][0] + 3  # both fit
    assert asmr["shared_minus_direct"] < 1e-5
    h = 16
    assert siren["macs_per_pixel"] == 2 * h + h * h + h * 1
    # per 256 pixels: layer 0 on 16 cells, layer 1 on 64, modulators per digit value, output per pixel
    shared = 2 * h * 16 + h * h * 64 + (2 * h) * 4 + (2 * h) * 4 + h * 256
    assert asmr["macs_per_pixel_shared"] == shared / 256
    text = report(rows, args)
    assert f"{siren['macs_per_pixel'] / asmr['macs_per_pixel_shared']:.1f}x fewer" in text


def test_raster_bases_must_multiply_to_the_size():
    from nerf_loe.benchmarks.raster import RasterArgs

    with pytest.raises(ConfigError, match="axis 1 multiplies to 32, not --size 64"):
        RasterArgs(size=64, bases=("4x4", "8x4", "2x2"))


def test_asmr_nerf_config_names_the_bad_option():
    from nerf_loe.models.asmr_model import ASMRModelConfig

    with pytest.raises(ConfigError, match="--pipeline.model.digits 'binary': choose digit or place"):
        ASMRModelConfig(digits="binary")
    with pytest.raises(ConfigError, match="--pipeline.model.bases 4x4: give one 4x4x4"):
        ASMRModelConfig(bases=("4x4",))
    with pytest.raises(ConfigError, match="--pipeline.model.cell-jitter must be >= 0"):
        ASMRModelConfig(cell_jitter=-1.0)


def test_asmr_nerf_starts_with_a_clear_scene_box():
    """As shipped, a ray across the box keeps most of its light at initialisation (the documented
    exp(-2) per box side; at the other methods' -0.3 some seeds turn the box opaque early):
    transmittance by a fine Riemann sum of the field's density along chords of the box."""
    import dataclasses

    from nerfstudio.data.scene_box import SceneBox

    from nerf_loe.method_configs.asmr import asmr_nerf

    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    shipped = asmr_nerf.config.pipeline.model

    def mean_transmittance(config) -> float:
        torch.manual_seed(0)
        field = config.setup(scene_box=box, num_train_data=1, metadata={}).field
        starts = torch.rand(64, 3) * 2 - 1
        starts[:, 0] = -1.0  # chords from the x = -1 face to the x = +1 face
        ends = torch.rand(64, 3) * 2 - 1
        ends[:, 0] = 1.0
        t = (torch.arange(400) + 0.5) / 400
        points = starts[:, None] + t[None, :, None] * (ends - starts)[:, None]
        with torch.no_grad():
            density = field.density_at(points.reshape(-1, 3)).reshape(64, 400)
        depth = density.sum(-1) * (ends - starts).norm(dim=-1) / 400
        return float(torch.exp(-depth).mean())

    assert mean_transmittance(shipped) > 0.8
    assert mean_transmittance(dataclasses.replace(shipped, density_bias=-0.3)) < 0.6


def test_released_frequencies_act_as_scaled_weight_columns_and_sharing_stays_exact():
    """FreeNeRF's mask on every encoding of the relu backbone equals scaling the columns of the
    weights that read those encodings (layer 0 reads level 0's, modulator k level k+1's or the
    remainder's) by FreeNeRF's group weights, in nerfstudio's channel layout (sin of every axis and
    band, axis-major, then cos, then the input); the shared path follows the mask's progress."""
    from nerf_loe.components.frequency_mask import freenerf_visibility

    torch.manual_seed(5)
    bases = [(2, 2, 2), (4, 4, 4), (4, 4, 4)]
    net = ASMR(bases, 16, 2, backbone="relu", frequency_mask=True, dense_cells=512).double().eval()
    x = torch.rand(2000, 3, dtype=torch.float64)
    with torch.no_grad():
        unmasked = net.forward_direct(x)  # progress starts at 1: nothing masked
        for progress in (0.0, 0.3, 0.8):
            for mask in net.frequency_masks:
                mask.progress.fill_(progress)
            reference = ASMR(bases, 16, 2, backbone="relu", dense_cells=512).double()
            reference.load_state_dict(net.state_dict(), strict=False)  # same weights, no masks
            readers = [reference.layers[0].weight] + [m.linear.weight for m in reference.modulators]
            for encoding, weight in zip(net.encodings, readers, strict=True):
                bands = encoding.num_frequencies
                groups = [1 + 2 * k for _ in range(3) for k in range(bands)]  # sin, axis-major
                groups += [2 + 2 * k for _ in range(3) for k in range(bands)]  # cos
                groups += [0, 0, 0]  # the input
                visible = freenerf_visibility(1 + 2 * bands, progress).double()
                weight.mul_(visible[torch.tensor(groups)])
            direct = net.forward_direct(x)
            assert torch.allclose(direct, reference.forward_direct(x), atol=1e-10)
            assert (net(x) - direct).abs().max() < 1e-10  # tables rebuilt for each progress
            assert (direct - unmasked).abs().max() > 1e-3
        for mask in net.frequency_masks:
            mask.progress.fill_(1.0)
        assert (net(x) - unmasked).abs().max() < 1e-10
    with pytest.raises(ConfigError, match="relu backbone"):
        ASMR(bases, 16, 2, backbone="siren", frequency_mask=True)


@pytest.mark.parametrize("backbone", ["relu", "siren"])
def test_cell_jitter_picks_the_neighbour_cell_at_the_box_filters_odds(backbone):
    """1-D, 8 finest cells. In a training pass with gradients, a position a quarter cell below a
    border is looked up in the next cell when u ~ U(-s/2, s/2) exceeds 1/4: odds 1/4 at s = 1,
    none at s = 0.4; at s = 2 also in the cell before (u < -3/4: odds 1/8; the next 3/8); a cell
    centre keeps its cell. The looked-up cell's inputs are then exactly the
    unjittered ones of the next cell's centre, the remainder's input that of the position itself
    (relu: its encoding; siren: the offset from the looked-up cell). Without gradients, and in
    evaluation, nothing moves; the shared path draws the same cells as the direct one."""
    net = ASMR([(2,), (4,)], 8, 2, backbone=backbone, sharing="always", cell_jitter=1.0, digits="place")
    n = 4000
    near = torch.full((n, 1), 2.75 / 8)  # a quarter cell below the border of cells 2 and 3
    own, nxt = (net.eval().level_inputs(torch.tensor([[v / 8]])) for v in (2.5, 3.5))
    net.train()
    for jitter, odds in ((1.0, 0.25), (0.4, 0.0)):
        net.cell_jitter = jitter
        torch.manual_seed(0)
        inputs = net.level_inputs(near)
        moved = (inputs[1] == nxt[1]).all(-1)
        assert torch.equal(moved | (inputs[1] == own[1]).all(-1), torch.ones(n, dtype=torch.bool))
        assert torch.equal(inputs[0], own[0].expand(n, -1))  # level 0 (cell [0, 1/2)) holds both
        assert abs(moved.double().mean().item() - odds) < 0.03  # binomial sd 0.007 at 1/4
        if backbone == "relu":  # the encoding of the position itself, jitter or not
            assert torch.equal(inputs[2], net.eval().level_inputs(near)[2])
            net.train()
        else:  # the offset from the looked-up cell, in place value: (2.75 - 2) / 8 or (2.75 - 3) / 8
            expected = torch.where(moved[:, None], torch.tensor(-0.25 / 8), torch.tensor(0.75 / 8))
            assert torch.allclose(inputs[2], expected)
    prev = net.eval().level_inputs(torch.tensor([[1.5 / 8]]))
    net.train()
    net.cell_jitter = 2.0  # u ~ U(-1, 1) cells from 2.75: cell 1 below -0.75, cell 3 from 0.25 on
    torch.manual_seed(0)
    picked = net.level_inputs(near)[1]
    shares = [(picked == cell[1]).all(-1).double().mean().item() for cell in (prev, own, nxt)]
    assert sum(shares) == pytest.approx(1.0)
    assert all(abs(share - odds) < 0.03 for share, odds in zip(shares, (0.125, 0.5, 0.375), strict=True))
    net.cell_jitter = 1.0
    centre = torch.full((n, 1), 2.5 / 8)
    assert torch.equal(net.level_inputs(centre)[1], own[1].expand(n, -1))
    with torch.no_grad():
        assert torch.equal(net(near), net.eval()(near))
    evaluated = net(near)  # evaluation with gradients: every copy in its own cell (float rounding)
    assert (evaluated - evaluated[:1]).abs().max() < 1e-6
    trained = net.train()(near)  # a quarter of the copies in the next cell
    assert (trained - evaluated[:1]).abs().max() > 1e-4
    x = torch.rand(500, 1)
    torch.manual_seed(1)
    shared = net(x)
    torch.manual_seed(1)
    assert (shared - net.forward_direct(x)).abs().max() < 1e-5
    assert (shared - net.eval()(x)).abs().max() > 1e-3  # some did move
