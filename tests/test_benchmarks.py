"""The method benchmark's harness: its measurements and its table, on a tiny scene."""

import copy
import math

import numpy as np
import pytest
import torch

from nerf_loe.benchmarks.methods import (
    BenchmarkArgs,
    EvalPoint,
    MethodResult,
    apply_overrides,
    check_qualifiers,
    load_run,
    macs_per_sample,
    overrides_for,
    plot,
    run_method,
    run_store,
    save_run,
    setup_trainer,
    summary,
    table,
    view_grid,
)
from nerf_loe.benchmarks.optimizer import field_parameters, time_steps
from nerf_loe.components.tiling import Tiling
from nerf_loe.errors import ConfigError
from nerf_loe.fields.radiance_field import LoETrunk, RadianceField


def _result(method: str, rays_per_s: float, curve: list[EvalPoint], note: str = "") -> MethodResult:
    return MethodResult(method, curve[-1].step, curve[-1].train_s, 1024, rays_per_s, 100, note, 5, 1.0, curve)


def test_table_reports_ratios_to_nerfacto_and_unreached_equal_steps():
    args = BenchmarkArgs(budget_s=60, equal_steps=100)
    final = EvalPoint(600, 60.0, 25.0, 0.7, shared_macs=987.6)
    loe = _result("loe-nerf", 800.0, [EvalPoint(100, 10.0, 20.0, 0.5, 23.0), final])
    loe.render_s, loe.render_macs_per_sample = 0.5, 1234.4  # a trunk that counts its shared MACs
    nerfacto = _result("nerfacto", 100.0, [EvalPoint(4, 60.0, 12.0, 0.2)], note="field MLPs only")
    text = table([loe, nerfacto], args)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    loe_cells = [c.strip() for c in rows["loe-nerf"].split("|")[1:-1]]
    assert loe_cells[1:7] == ["25.00", "0.700", "600", "20.00", "0.500", "23.00"]
    assert loe_cells[7:10] == ["800 (8.0x)", "100 (1,234 shared, one image; 988 over the test set)", "0.50"]
    nerfacto_cells = [c.strip() for c in rows["nerfacto"].split("|")[1:-1]]
    assert nerfacto_cells[4:7] == ["-", "-", "-"] and nerfacto_cells[8] == "100*"
    assert all(len(line.split("|")) == len(text.splitlines()[0].split("|")) for line in rows.values())
    assert "\\* field MLPs only" in text


def test_summary_gives_each_methods_median_and_worst_scene_and_margins():
    args = BenchmarkArgs(budget_s=60, equal_steps=100)
    final = {"loe-nerf": (20.0, 25.0, 22.0), "mlp-nerf": (21.0, 24.0, 23.5)}
    results = []
    for method, psnrs in final.items():
        for scene, psnr in zip("abc", psnrs, strict=True):
            curve = [EvalPoint(100, 10.0, psnr - 5, 0.5), EvalPoint(500, 60.0, psnr, psnr / 100)]
            results.append(_result(method, 1.0, curve))
            results[-1].scene = scene
    text = summary(results, args)
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ")
    }
    # loe: median of 20, 25, 22 is 22, worst 20 on a; SSIM = PSNR/100; at 100 steps each is 5 dB lower
    assert rows["loe-nerf"] == ["22.00", "20.00 (a)", "0.22", "0.20 (a)", "17.00", "15.00 (a)"]
    assert rows["mlp-nerf"][:2] == ["23.50", "21.00 (a)"]
    assert (
        rows["a"] == ["-1.00 / -1.00"] and rows["b"] == ["+1.00 / +1.00"] and rows["c"] == ["-1.50 / -1.50"]
    )


def test_view_grid_puts_scenes_in_rows_and_truth_then_methods_in_columns(tmp_path):
    from PIL import Image

    results = []
    for scene, shade in (("a", 10), ("b", 200)):
        for k, method in enumerate(("loe-nerf", "mlp-nerf")):
            r = _result(method, 1.0, [EvalPoint(1, 1.0, 20.0, 0.5)])
            r.scene = scene
            r.target = np.full((4, 5, 3), shade, np.uint8)
            r.view = np.full((4, 5, 3), shade + 1 + k, np.uint8)
            results.append(r)
    view_grid(results, tmp_path / "grid.png")
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * (4 + 2), 3 * (5 + 2), 3)  # 2-pixel gaps after each tile
    assert [grid[0, 7 * col, 0] for col in range(3)] == [10, 11, 12]
    assert [grid[6, 7 * col, 0] for col in range(3)] == [200, 201, 202]


def test_macs_per_sample_uses_the_fields_own_count_else_its_linears():
    trunk = LoETrunk(Tiling([(2, 2, 2), (4, 4, 4)]), out_dim=16, hidden_dim=16)
    field = RadianceField(torch.tensor([[-1.0] * 3, [1.0] * 3]), trunk)
    model = torch.nn.Module()
    model.field = field
    assert macs_per_sample(model) == (sum(m for m, _ in field.complexity().values()), "")
    plain = torch.nn.Module()
    plain.field = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    macs, note = macs_per_sample(plain)
    assert macs == 3 * 8 + 8 * 2 and note


def test_args_reject_a_non_positive_scale_factor():
    with pytest.raises(ConfigError, match="scale-factor"):
        BenchmarkArgs(scale_factor=0.0)


def test_overrides_convert_to_each_options_type():
    from nerf_loe.models.loe_model import LoEModelConfig

    config = LoEModelConfig()
    apply_overrides(
        config,
        (
            "residual_banks=true",
            "unbounded=false",
            "density_bias=-2.5",
            "hidden_dim=32",
            "marcher.early_stop=none",
            "banks=2x2x2,1x1x1",
        ),
    )
    assert config.banks == ("2x2x2", "1x1x1")
    assert config.residual_banks is True and config.unbounded is False
    assert config.density_bias == -2.5 and config.hidden_dim == 32 and config.marcher.early_stop == "none"
    apply_overrides(config, ("unbounded=None",))
    assert config.unbounded is None
    with pytest.raises(ConfigError, match="not a boolean"):
        apply_overrides(config, ("residual_banks=maybe",))
    with pytest.raises(ConfigError, match="no option 'banks_per_layer'"):
        apply_overrides(config, ("banks_per_layer=3",))

    from nerf_loe.data.datamanager import ValidatedDataManagerConfig

    datamanager = ValidatedDataManagerConfig()
    apply_overrides(
        config, ("datamanager.teaching.enabled=true", "datamanager.teaching.pool_factor=8"), datamanager
    )
    assert datamanager.teaching.enabled is True and datamanager.teaching.pool_factor == 8
    with pytest.raises(ConfigError, match="uniform-share 1.5"):  # the changed config is checked
        apply_overrides(config, ("datamanager.teaching.uniform_share=1.5",), datamanager)

    from nerfstudio.configs.method_configs import all_methods

    import nerf_loe.method_configs  # noqa: F401

    trainer = copy.deepcopy(all_methods["asmr-nerf"])
    apply_overrides(config, ("trainer.optimizers.fields.optimizer.lr=1e-3",), datamanager, trainer)
    assert trainer.optimizers["fields"]["optimizer"].lr == 1e-3
    assert all_methods["asmr-nerf"].optimizers["fields"]["optimizer"].lr == 4e-3
    with pytest.raises(ConfigError, match="the trainer config has no option 'trainer.optimizers.colour.lr'"):
        apply_overrides(config, ("trainer.optimizers.colour.lr=1",), datamanager, trainer)
    # items for one method, and values holding a colon, which name no method
    assert overrides_for("mlp-nerf", ("asmr-nerf:w0=10", "dictionary=/a:b", "mlp-nerf:hidden_dim=8")) == (
        "dictionary=/a:b",
        "hidden_dim=8",
    )
    # an item that would reach no run is an error, not silently dropped
    check_qualifiers(("loe-nerf", "nerfacto"), ("loe-nerf:hidden_dim=8", "dictionary=/a:b"))
    with pytest.raises(ConfigError, match="nerfacto runs as shipped"):
        check_qualifiers(("loe-nerf", "nerfacto"), ("nerfacto:hidden_dim=8",))
    with pytest.raises(ConfigError, match="mlp-nerf is not among --methods loe-nerf"):
        check_qualifiers(("loe-nerf",), ("mlp-nerf:hidden_dim=8",))


def test_run_method_measures_training_and_test_metrics(tiny_scene, tmp_path):
    args = BenchmarkArgs(
        budget_s=1e9,
        max_steps=12,
        equal_steps=6,
        eval_steps=(3,),
        device="cpu",
        train_views=2,
        scale_factor=0.5,
    )
    result = run_method("mlp-nerf", tiny_scene, args)
    assert result.steps == 12
    assert [p.step for p in result.curve] == [3, 6, 12]
    assert all(math.isfinite(p.psnr) and 0 < p.ssim <= 1 for p in result.curve)
    assert all(p.train_psnr is not None and 5 < p.train_psnr < 60 for p in result.curve)
    assert result.curve[1].train_s > result.curve[0].train_s > 0
    assert result.rays_per_s == pytest.approx(result.rays_per_batch * 12 / result.train_s)
    assert result.macs_per_sample > 0 and result.params > 0 and result.peak_mb > 0
    assert result.scene == tiny_scene.name
    assert result.view.shape == result.target.shape == (32, 32, 3) and result.view.dtype == np.uint8
    assert result.target.std() > 0  # the scored ground truth, not a blank image
    plot([result], tmp_path / "curve.png", "tiny")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_training_profile_splits_each_step_into_its_parts(tiny_scene):
    from nerf_loe.benchmarks.training_profile import ProfileArgs, profile

    rows = profile(ProfileArgs(scene=tiny_scene, method="mlp-nerf", steps=6, every=4, set=("hidden_dim=16",)))
    timed, final = rows[:-1], rows[-1]
    assert [r["step"] for r in timed] == [4, 6]
    for r in timed:
        parts = r["march_ms"] + r["prepass_ms"] + r["grid_ms"]
        assert 0 < r["march_ms"] and 0 <= r["prepass_ms"] and parts < r["ms_per_step"]
        assert r["samples_per_ray"] > 0 and 0 < r["occupancy"] <= 1
    assert final["step"] == 6 and 5 < final["test_psnr"] < 60


def test_report_over_scenes_has_the_summary_each_scene_and_no_images_in_json(tmp_path):
    import json
    from pathlib import Path

    from nerf_loe.benchmarks.methods import write_report

    results = []
    for scene, psnr in (("a", 20.0), ("b", 23.0)):
        r = _result("loe-nerf", 1.0, [EvalPoint(10, 1.0, psnr, 0.5)])
        r.scene, r.view, r.target = scene, np.zeros((4, 5, 3), np.uint8), np.ones((4, 5, 3), np.uint8)
        results.append(r)
    text = write_report(results, BenchmarkArgs(out=tmp_path / "bench"), [Path("a"), Path("b")])
    assert "## Over scenes" in text and "## a" in text and "## b" in text
    assert "| loe-nerf | 21.50 | 20.00 (a) |" in text  # median of 20 and 23, worst scene a
    payload = json.loads((tmp_path / "bench.json").read_text())
    assert [r["scene"] for r in payload["results"]] == ["a", "b"]
    assert all("view" not in r and "target" not in r for r in payload["results"])
    assert (tmp_path / "bench_views.png").exists() and (tmp_path / "bench.png").exists()


def test_a_stored_run_is_reused_only_under_the_same_settings(tmp_path):
    from pathlib import Path

    args = BenchmarkArgs(budget_s=60, runs_dir=tmp_path / "runs", out=tmp_path / "a")
    scene = Path("data/some-scene")
    path = run_store(args, scene, "loe-nerf")
    assert load_run(path, args, scene, "loe-nerf") is None  # nothing stored yet
    stored = _result("loe-nerf", 800.0, [EvalPoint(600, 60.0, 25.0, 0.7)])
    save_run(path, args, scene, "loe-nerf", stored)
    other_outputs = BenchmarkArgs(budget_s=60, runs_dir=tmp_path / "runs", out=tmp_path / "b", methods=("x",))
    assert load_run(path, other_outputs, scene, "loe-nerf").curve == stored.curve  # outputs, method list
    assert load_run(path, BenchmarkArgs(budget_s=30, runs_dir=tmp_path / "runs"), scene, "loe-nerf") is None
    overridden = BenchmarkArgs(budget_s=60, set=("hidden_dim=16",), runs_dir=tmp_path / "runs")
    assert load_run(path, overridden, scene, "loe-nerf") is None
    # an item for another method leaves this method's run valid; one for this method does not
    elsewhere = BenchmarkArgs(budget_s=60, set=("asmr-nerf:hidden_dim=16",), runs_dir=tmp_path / "runs")
    assert load_run(path, elsewhere, scene, "loe-nerf").curve == stored.curve
    mine = BenchmarkArgs(budget_s=60, set=("loe-nerf:hidden_dim=16",), runs_dir=tmp_path / "runs")
    assert load_run(path, mine, scene, "loe-nerf") is None
    assert load_run(path, args, Path("data/other-scene"), "loe-nerf") is None


def test_a_stored_run_is_not_reused_after_the_method_default_changes(tmp_path, monkeypatch):
    import copy
    from pathlib import Path

    from nerfstudio.configs.method_configs import all_methods

    args = BenchmarkArgs(budget_s=60, runs_dir=tmp_path / "runs")
    scene = Path("data/some-scene")
    path = run_store(args, scene, "mlp-nerf")
    stored = _result("mlp-nerf", 800.0, [EvalPoint(600, 60.0, 25.0, 0.7)])
    save_run(path, args, scene, "mlp-nerf", stored)
    assert load_run(path, args, scene, "mlp-nerf").curve == stored.curve
    changed = copy.deepcopy(all_methods["mlp-nerf"])
    changed.optimizers["fields"]["optimizer"].lr = 1e-4  # a new default rate, say
    monkeypatch.setitem(all_methods, "mlp-nerf", changed)
    assert load_run(path, args, scene, "mlp-nerf") is None


def test_a_stored_teaching_run_is_reused_only_under_the_same_settings_and_defaults(tmp_path, monkeypatch):
    import copy

    from nerfstudio.configs.method_configs import all_methods

    from nerf_loe.benchmarks.teaching import Run, TeachingBenchmarkArgs, load_run, save_run

    args = TeachingBenchmarkArgs(steps=400, runs_dir=tmp_path / "runs")
    path = tmp_path / "runs" / "woodbox__mlp-nerf__uniform__0.json"
    assert load_run(path, args, "mlp-nerf") is None  # nothing stored yet
    save_run(path, args, Run("mlp-nerf", "uniform", 0, [(100, 5.0, 20.0), (400, 20.0, 23.5)]))
    other_lists = TeachingBenchmarkArgs(steps=400, runs_dir=tmp_path / "runs", seeds=(7,), out=tmp_path / "x")
    assert load_run(path, other_lists, "mlp-nerf").curve == [[100, 5.0, 20.0], [400, 20.0, 23.5]]
    assert load_run(path, TeachingBenchmarkArgs(steps=800, runs_dir=tmp_path / "runs"), "mlp-nerf") is None
    changed = copy.deepcopy(all_methods["mlp-nerf"])
    changed.optimizers["fields"]["optimizer"].lr = 1e-4  # a new default rate, say
    monkeypatch.setitem(all_methods, "mlp-nerf", changed)
    assert load_run(path, args, "mlp-nerf") is None


def test_an_interrupted_store_keeps_the_run_stored_before(tmp_path, monkeypatch):
    """A benchmark killed while storing a run (Ctrl-C, out of memory) must leave the earlier
    stored run readable, not a half-written file that the next benchmark fails on."""
    from pathlib import Path

    from nerf_loe.benchmarks.teaching import Run, TeachingBenchmarkArgs, load_run, save_run

    args = TeachingBenchmarkArgs(steps=400, runs_dir=tmp_path / "runs")
    path = tmp_path / "runs" / "woodbox__mlp-nerf__uniform__0.json"
    save_run(path, args, Run("mlp-nerf", "uniform", 0, [(400, 20.0, 23.5)]))
    write_bytes, write_text = Path.write_bytes, Path.write_text

    def interrupted(method):
        def write(self, data, *rest, **options):
            method(self, data[: len(data) // 2], *rest, **options)
            raise KeyboardInterrupt

        return write

    monkeypatch.setattr(Path, "write_bytes", interrupted(write_bytes))
    monkeypatch.setattr(Path, "write_text", interrupted(write_text))
    with pytest.raises(KeyboardInterrupt):
        save_run(path, args, Run("mlp-nerf", "uniform", 0, [(400, 30.0, 25.0)]))
    monkeypatch.undo()
    assert load_run(path, args, "mlp-nerf").curve == [[400, 20.0, 23.5]]


def test_a_stored_run_is_reused_by_another_process(tmp_path):
    """The key is made afresh by every benchmark process: nothing in it (a function's memory
    address, say) may differ from one process to the next."""
    from pathlib import Path

    from nerf_loe.benchmarks import in_fresh_process
    from nerf_loe.benchmarks.methods import _settings

    args = BenchmarkArgs(budget_s=60, runs_dir=tmp_path / "runs")
    scene = Path("data/some-scene")
    assert in_fresh_process(_settings, args, scene, "mlp-nerf") == _settings(args, scene, "mlp-nerf")


def test_a_run_in_a_fresh_process_ends_when_its_benchmark_is_killed():
    """``kill`` on a benchmark (SIGTERM to the parent alone) must not leave its run training."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = (
        "import time; from nerf_loe.benchmarks import in_fresh_process; in_fresh_process(time.sleep, 120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            children = psutil.Process(parent.pid).children()
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 1, "the worker process never started"
        parent.send_signal(signal.SIGTERM)
        parent.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, "the worker outlived its benchmark"
    finally:
        parent.kill()
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


@pytest.mark.parametrize(("backbone", "remainder_inputs"), [("siren", 3), ("relu", 3 + 2 * 3 * 5)])
def test_sharing_benchmark_runs_only_the_last_layers_per_sample_with_warm_tables(
    tmp_path, backbone, remainder_inputs
):
    from nerf_loe.benchmarks.sharing import SharingArgs, image_positions, measure, report

    args = SharingArgs(
        width=8,
        fine_dim=4,
        image=(12, 9),
        samples=6,
        chunk=200,
        repeats=1,
        device="cpu",
        out=tmp_path / "s",
        backbone=backbone,
        remainder_frequencies=5,
    )
    positions = image_positions(args)
    assert positions.shape == (12 * 9 * 6, 3) and positions.min() >= 0 and positions.max() < 1
    rows = measure(args)
    assert [r["depth"] for r in rows] == [4, 6, 8]
    for r in rows:
        assert r["warm_macs"] < min(r["cold_macs"], r["direct_macs"])  # cold: tables built for 648 samples
        # warm: every cell is in a table, so only the remainder's modulator and the output run per
        # sample, both as wide as the last layer (relu: x, sin and cos at 5 frequencies)
        assert r["warm_macs"] == remainder_inputs * 4 + 4 * 16
        # the test set starts cold, and its later images find the cells they share with earlier ones
        assert r["warm_macs"] < r["test_set_macs"] < r["cold_macs"]
        # cells a position, by level, against a count of the distinct per-axis cells in Python
        levels, scale = [], 1
        for b in map(int, r["bases"].split("-")):
            scale *= b
            levels.append(scale)  # cells per axis at each level, 4-16-128 at depth 4
        expected = [
            len(set(map(tuple, (positions.double() * c).floor().long().tolist()))) / len(positions)
            for c in levels
        ]
        assert r["cells"] == pytest.approx(expected)
    assert "| 8 | 2-2-2-2-2-2-2 |" in report(rows, args, len(positions))


def test_sharing_benchmark_on_a_scene_times_whole_renders_of_a_trained_asmr_nerf(tiny_scene, tmp_path):
    from nerf_loe.benchmarks.sharing import SharingArgs, measure_trained, report_trained

    args = SharingArgs(scene=tiny_scene, steps=3, repeats=1, device="cpu", out=tmp_path / "s")
    row, calls = measure_trained(4, args)
    assert row["bases"] == "4-4-8" and row["images"] == len(calls) == 3  # every 8th of 24 views
    # the trunk sees the early-stopping pre-pass's positions and the shaded samples again; the
    # recorded calls are those positions
    assert row["trunk_inputs"] > row["shaded"] > 0
    assert sum(len(x) for image in calls for x in image) == round(row["trunk_inputs"] * 3)
    assert all(x.shape[-1] == 3 and 0 <= x.min() and x.max() < 1 for image in calls for x in image)
    assert row["replay_cold"] > 0 and row["replay_test_set"] > 0
    for mode in ("direct", "cold", "warm", "test_set"):
        assert 0 < row[f"trunk_{mode}"] < row[mode]  # the trunk's part of each render
    # shared: the first layers once per cell; the per-sample part from the layer shapes (relu
    # backbone: the remainder's encoding, 3 + 6 x 7 bands, and the output layer, at 96 wide)
    assert (3 + 6 * 7) * 96 + 96 * 16 < row["test_set_macs"] < row["direct_macs"] == 45_664
    assert 0 < row["psnr"] < 60
    assert "| 4 | 4-4-8 |" in report_trained([row], args)


def test_sharing_benchmark_test_set_views_turn_about_the_vertical_axis():
    from nerf_loe.benchmarks.sharing import SharingArgs, image_positions

    args = SharingArgs(image=(12, 9), samples=6, device="cpu")
    front = image_positions(args)
    side = image_positions(args, math.pi / 2)
    assert torch.allclose(image_positions(args, 2 * math.pi), front, atol=1e-5)
    # a quarter turn carries each sample's depth in the box (z, from 1 to 0 along the rays, never
    # clamped) onto x, and leaves heights alone
    assert torch.allclose(side[:, 0], front[:, 2], atol=1e-6)
    assert torch.equal(side[:, 1], front[:, 1])
    assert not torch.allclose(side, front, atol=1e-2)


def test_output_stems_keep_their_dots():
    from pathlib import Path

    from nerf_loe.benchmarks import beside

    assert beside(Path("results/loe_scale_0.1"), ".md") == Path("results/loe_scale_0.1.md")
    assert beside(Path("plain"), "_views.png") == Path("plain_views.png")


def test_a_report_lands_beside_its_stem_in_a_new_folder_with_its_payload(tmp_path):
    import json

    from nerf_loe.benchmarks import save_report

    stem = tmp_path / "new" / "loe_scale_0.1"
    save_report(stem, "# title\n", {"psnr": 21.5, "path": tmp_path})
    assert (tmp_path / "new" / "loe_scale_0.1.md").read_text() == "# title\n"
    assert json.loads((tmp_path / "new" / "loe_scale_0.1.json").read_text()) == {
        "psnr": 21.5,
        "path": str(tmp_path),  # what JSON cannot hold is written as text
    }
    save_report(stem, "# second\n")  # a report without a payload leaves the last JSON alone
    assert (tmp_path / "new" / "loe_scale_0.1.md").read_text() == "# second\n"
    assert sorted(f.name for f in (tmp_path / "new").iterdir()) == ["loe_scale_0.1.json", "loe_scale_0.1.md"]


def test_sparse_view_fits_get_freenerf_by_view_count_and_the_margin_over_the_best_baseline(tmp_path):
    from nerf_loe.benchmarks.sparse_views import SparseViewArgs, comparison, method_args

    args = SparseViewArgs(steps=900, nid_steps=300, eval_steps=(10, 300, 600), runs_dir=tmp_path)
    checkpoint = tmp_path / "step-000000099.ckpt"
    mlp = method_args(args, "mlp-nerf", 6, checkpoint)
    assert mlp.set == ("frequency_reg_fraction=0.7", "occlusion_reg_mult=0.01")
    assert (mlp.max_steps, mlp.eval_steps, mlp.train_views) == (900, (10, 300, 600), 3)
    loe = method_args(args, "loe-nerf", 3, checkpoint).set
    assert loe[0] == "frequency_reg_fraction=0.9" and loe[-1] == "residual_release_step=0"  # banks act
    nid = method_args(args, "nid-nerf", 9, checkpoint)
    assert nid.set == (f"dictionary={checkpoint.resolve()}",) and nid.max_steps == 300
    assert nid.eval_steps == (10,)  # the last evaluation is the final one
    assert method_args(args, "nerfacto", 3, checkpoint).set == ()
    with pytest.raises(ConfigError, match="3, 6 and 9 views"):
        SparseViewArgs(views=(4,))

    ours = _result("nid-nerf", 1.0, [EvalPoint(10, 2.0, 14.0, 0.5), EvalPoint(300, 20.0, 21.0, 0.8)])
    mlp_run = _result("mlp-nerf", 1.0, [EvalPoint(100, 10.0, 15.0, 0.5), EvalPoint(900, 90.0, 17.5, 0.6)])
    loe_run = _result("loe-nerf", 1.0, [EvalPoint(100, 12.0, 18.0, 0.5), EvalPoint(900, 99.0, 16.0, 0.6)])
    found = comparison([ours, mlp_run, loe_run], "nid-nerf")
    # best by final PSNR: mlp (17.5); loe peaked higher on the way but ended lower
    assert found["best"] == "mlp-nerf" and found["margin"] == pytest.approx(3.5)
    assert found["best_s"] == pytest.approx(90.0)
    assert found["ours_s"] == pytest.approx(2.0 + (17.5 - 14.0) / 7.0 * 18.0)  # between 2 s and 20 s
    assert found["ratio"] == pytest.approx(found["ours_s"] / 90.0)

    from nerf_loe.benchmarks.sparse_views import write_report

    args.out, args.views = tmp_path / "sparse", (3,)
    text = write_report([(3, ours), (3, mlp_run), (3, loe_run)], args)
    share = found["ours_s"] / 90.0
    assert f"| 3 | +3.50 | +3.50 | {share:.3f}x | {share:.3f}x |" in text
    row = "| 3 |  | 21.00 / 0.800 / 20 | 17.50 / 0.600 / 90 | 16.00 / 0.600 / 99 | +3.50 (mlp-nerf) |"
    assert row in text
    assert (tmp_path / "sparse.md").read_text() == text and (tmp_path / "sparse.json").is_file()


def test_asmr_nerfs_executed_macs_count_the_colour_head_and_fall_below_the_direct_count(tiny_scene, tmp_path):
    # Sharing trunks report the MACs they execute: per sample at least what cannot be shared (the
    # position's modulator, the output layer, the colour head, all from their layer shapes), and,
    # with small tables reused over many samples, below the direct path's count of every layer.
    args = BenchmarkArgs(
        budget_s=1e9,
        max_steps=2,
        equal_steps=2,
        device="cpu",
        train_views=0,
        scale_factor=0.5,
        set=("bases=2x2x2,2x2x2", "hidden_dim=16"),
    )
    model = setup_trainer("asmr-nerf", tiny_scene, args, tmp_path).pipeline.model
    trunk, head = model.field.trunk, model.field.color_head
    widths = [head.in_dim] + [head.layer_width] * (head.num_layers - 1) + [head.out_dim]
    per_sample = (
        trunk.modulators[-1].linear.in_features * 16
        + 16 * trunk.output.out_features
        + sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    )
    result = run_method("asmr-nerf", tiny_scene, args)
    for executed in (result.render_macs_per_sample, result.curve[-1].shared_macs):
        assert per_sample < executed < result.macs_per_sample


def test_optimizer_benchmark_times_every_implementation_on_the_methods_own_parameters():
    loe, mlp = field_parameters("loe-nerf", "cpu"), field_parameters("mlp-nerf", "cpu")
    # the MLP trunk by hand: 51 -> 128 -> 128 -> 128 -> 128 -> 16, weights and biases
    mlp_trunk = 51 * 128 + 128 + 3 * (128 * 128 + 128) + 128 * 16 + 16
    assert mlp_trunk < sum(p.numel() for p in mlp) < mlp_trunk + 5_000  # plus the colour head
    # loe-nerf's tiled layers hold 8, 64, 64, 64 residual banks besides the shared matrices
    banks = 8 * 51 * 128 + 64 * 3 * 128 * 128
    assert sum(p.numel() for p in loe) - sum(p.numel() for p in mlp) == banks
    times = time_steps(mlp, repeats=2, lr=1e-3)
    assert set(times) == {"default", "foreach", "fused"} and all(t > 0 for t in times.values())


def test_asmr_tables_trade_table_memory_and_macs_for_the_same_picture(tiny_scene):
    from nerf_loe.benchmarks.asmr_tables import TablesArgs, compare_tables

    # cells per axis 2, 4, 16: levels of 8, 64 and 4096 cells, all complete under 4096, none under 0
    args = TablesArgs(
        scene=tiny_scene,
        steps=20,
        dense_cells=(4096, 0),
        repeats=1,
        set=("bases=2x2x2,2x2x2,4x4x4", "hidden_dim=16", "fine_dim=8"),
    )
    complete, touched = compare_tables(args)
    assert [complete["dense_cells"], touched["dense_cells"]] == [4096, 0]
    assert abs(complete["psnr"] - touched["psnr"]) < 1e-4  # sharing is exact either way
    # complete tables: 8 and 64 rows 16 wide (the hidden layers), 4096 rows 8 wide (the last), float32
    assert complete["table_mb"] * 2**20 == (8 * 16 + 64 * 16 + 4096 * 8) * 4
    assert touched["macs"] < complete["macs"]
