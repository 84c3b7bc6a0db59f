"""ASMR's activation sharing at render time: trunk cost per image against depth, shared vs direct.

Run: ``python -m nerf_loe.benchmarks.sharing [--device cuda]``. For depths 4, 6 and 8 at one
width, the finest cell fixed (1/128 of the box per axis, so depth changes the levels, not the
resolution), the ASMR trunk evaluates the sample positions of one 100x75 image (rays from a
camera outside the unit box, ``samples`` per ray inside it, in chunks as a render does) along
four paths: direct (every layer per sample), shared with cold tables (the first render after a
parameter change), shared with warm tables (the next render of an unchanged model, as in the
viewer), and a test set: ``views`` images from cameras spaced around the box, rendered one after
another from cold tables, as ``ns-eval`` renders a test set after training (later images find the
cells they share with earlier ones in the tables). Prints, and writes to ``<out>.md``: seconds
per image (median of ``repeats``; for the test set, its total over ``views``), executed MACs per
sample, table memory, and the time ratio to depth 4.

With ``--scene DATASET`` it measures what a user sees instead: asmr-nerf (the shipped config, only
the bases changed) trains ``steps`` iterations at each depth on the dataset (nerfstudio format),
then renders its test images as ``ns-eval`` does (occupancy-grid marching, the density pre-pass of
early stopping, heads, compositing), direct, cold, warm and as a test set; it reports seconds per
image, the trunk's share of them (timed around its calls: on CUDA the clock synchronises the device
around each trunk call, which the renders' times include), its inputs and MACs per image, and the
test PSNR. Sample positions then follow the trained scene (surfaces, a fine step along each ray)
rather than fill the box.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nerf_loe.benchmarks import in_fresh_process, report_head, save_report
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.compat.allocator import tune_cpu_allocator
from nerf_loe.components.asmr import ASMR, Backbone
from nerf_loe.errors import ConfigError, install_excepthook
from nerf_loe.models.asmr_model import ASMRModelConfig

RESULTS = Path(__file__).parent / "results"

#: per depth (linear layers: one per level after the first, one for the remainder, the output),
#: bases whose product is 128 per axis
BASES = {4: [4, 4, 8], 6: [2, 2, 4, 4, 2], 8: [2, 2, 2, 2, 2, 2, 2]}


@dataclass
class SharingArgs:
    width: int = 128
    """Trunk width."""
    fine_dim: int = ASMRModelConfig.fine_dim
    """Width of the last (per-sample) layer, asmr-nerf's default."""
    backbone: Backbone = ASMRModelConfig.backbone
    """relu (asmr-nerf's default) or siren (the paper's)."""
    remainder_frequencies: int = ASMRModelConfig.remainder_frequencies
    """relu: frequency bands of the last layer's encoding of the position, asmr-nerf's default."""
    image: tuple[int, int] = (100, 75)
    samples: int = 48
    """Samples per ray inside the box."""
    chunk: int = 4096 * 16
    """Positions per trunk call."""
    repeats: int = 5
    views: int = 8
    """Images in the test-set sequence (cameras every 360/views degrees around the box's vertical
    axis)."""
    scene: Path | None = None
    """A dataset (nerfstudio format): time full renders of asmr-nerf trained on it at each depth
    instead of the trunk on synthetic positions (``image``, ``samples``, ``chunk``, ``views``,
    ``width``, ``fine_dim``, ``backbone`` then come from the data and the shipped config)."""
    steps: int = 1000
    """With ``scene``: training iterations per depth."""
    seed: int = 42
    """With ``scene``: the training seed."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: Path = RESULTS / "sharing_cpu"


def image_positions(args: SharingArgs, angle: float = 0.0) -> torch.Tensor:
    """Sample positions in the unit box of one image seen from a camera at (0.5, 0.5, 2.5), turned
    by ``angle`` (radians) about the box's vertical axis, x = z = 0.5."""
    w, h = args.image
    u, v = torch.meshgrid(torch.linspace(-0.3, 0.3, w), torch.linspace(-0.25, 0.25, h), indexing="xy")
    directions = torch.stack([u, v, -torch.ones_like(u)], -1).reshape(-1, 3)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origin = torch.tensor([0.5, 0.5, 2.5])
    t_near, t_far = 1.5 / directions[:, 2].abs(), 2.5 / directions[:, 2].abs()  # z from 1 to 0
    t = t_near[:, None] + (t_far - t_near)[:, None] * (torch.arange(args.samples) + 0.5) / args.samples
    points = (origin + directions[:, None, :] * t[..., None]).reshape(-1, 3)
    c, s = math.cos(angle), math.sin(angle)
    x, z = points[:, 0] - 0.5, points[:, 2] - 0.5
    points = torch.stack([0.5 + c * x + s * z, points[:, 1], 0.5 - s * x + c * z], dim=-1)
    return points.clamp(0.0, 1.0 - 1e-6)


def render(net: ASMR, positions: torch.Tensor, chunk: int, shared: bool) -> float:
    watch = Stopwatch(cuda=positions.device.type == "cuda")
    with torch.no_grad(), watch:
        for start in range(0, len(positions), chunk):
            part = positions[start : start + chunk]
            net.forward_shared(part) if shared else net.forward_direct(part)
    return watch.seconds


def cells_per_position(net: ASMR, positions: torch.Tensor) -> list[float]:
    """Per level, the distinct cells among ``positions`` per position: the rows a cold shared pass
    evaluates at that level for each input (near 1: nothing left to share there, whatever the
    implementation; samples on rays touch cells in proportion to the resolution, not its cube)."""
    return [
        torch.unique(net.region_ids(positions, level)).numel() / len(positions)
        for level in range(net.num_levels)
    ]


def measure(args: SharingArgs) -> list[dict]:
    positions = image_positions(args).to(args.device)
    test_set = [
        image_positions(args, 2 * math.pi * k / args.views).to(args.device) for k in range(args.views)
    ]
    rows = []
    for depth, bases in BASES.items():
        torch.manual_seed(0)
        net = (
            ASMR(
                [(b, b, b) for b in bases],
                args.width,
                16,
                backbone=args.backbone,
                fine_dim=args.fine_dim,
                remainder_frequencies=args.remainder_frequencies,
            )
            .to(args.device)
            .eval()
        )  # rendering: complete tables where a level is small enough
        times: dict[str, list[float]] = {"direct": [], "cold": [], "warm": [], "test_set": []}
        for _ in range(args.repeats):
            times["direct"].append(render(net, positions, args.chunk, shared=False))
            with torch.no_grad():
                net.output.bias.add_(0.0)  # a parameter "changes": the tables go
            net.reset_counters()
            times["cold"].append(render(net, positions, args.chunk, shared=True))
            cold_macs = net.shared_macs_per_sample()
            net.reset_counters()
            times["warm"].append(render(net, positions, args.chunk, shared=True))
            warm_macs = net.shared_macs_per_sample()
            net.invalidate_tables()
            net.reset_counters()
            times["test_set"].append(
                sum(render(net, p, args.chunk, shared=True) for p in test_set) / args.views
            )
            test_set_macs = net.shared_macs_per_sample()
        row = {k: statistics.median(v) for k, v in times.items()}
        row.update(
            depth=depth,
            bases="-".join(map(str, bases)),
            direct_macs=net.macs_per_sample(),
            cold_macs=cold_macs,
            warm_macs=warm_macs,
            test_set_macs=test_set_macs,
            table_mib=net.table_bytes() / 2**20,
            cells=cells_per_position(net, positions),
        )
        rows.append(row)
        print(row, flush=True)
    return rows


def report(rows: list[dict], args: SharingArgs, samples: int) -> str:
    base = rows[0]
    title = (
        f"ASMR activation sharing: trunk cost of one {args.image[0]}x{args.image[1]} image against depth, "
        f"{args.device}"
    )
    bands = f", {args.remainder_frequencies} remainder bands" if args.backbone == "relu" else ""
    lines = [
        *report_head(title, "python -m nerf_loe.benchmarks.sharing"),
        "",
        f"{args.backbone} backbone, width {args.width} (last layer {args.fine_dim}{bands}), "
        "finest cell 1/128 of the box per axis, "
        f"{samples:,d} positions ({args.samples} per ray), chunks of {args.chunk:,d}; "
        f"median of {args.repeats} runs. Cold: tables rebuilt (first render after a parameter "
        "change); warm: the next render; test set: "
        f"{args.views} views around the box rendered in turn from cold tables, seconds per image. "
        "Cells a position, by level: the distinct cells of each level among the image's positions, "
        "per position (what a cold pass evaluates at that level for each sample; near 1, no "
        "implementation can share).",
        "",
        "| depth | bases per axis | direct s | shared cold s | shared warm s | cold / depth 4 "
        "| warm / depth 4 | test set s | test set / depth 4 | MACs/sample direct | cold | warm | test set "
        "| tables MiB | cells a position, by level |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['depth']} | {r['bases']} | {r['direct']:.3f} | {r['cold']:.3f} | {r['warm']:.3f} "
            f"| {r['cold'] / base['cold']:.2f} | {r['warm'] / base['warm']:.2f} | {r['test_set']:.3f} "
            f"| {r['test_set'] / base['test_set']:.2f} | {r['direct_macs']:,d} | {r['cold_macs']:,.0f} "
            f"| {r['warm_macs']:,.0f} | {r['test_set_macs']:,.0f} | {r['table_mib']:.1f} "
            f"| {' '.join(f'{c:.2f}' for c in r['cells'])} |"
        )
    return "\n".join(lines) + "\n"


class _TrunkClock:
    """Seconds spent inside a module's forward calls, the inputs it received, and while
    ``recorded`` is a list, the inputs themselves (one tensor a call)."""

    def __init__(self, module: torch.nn.Module, cuda: bool) -> None:
        self.watch, self.inputs = Stopwatch(cuda), 0
        self.recorded: list[torch.Tensor] | None = None
        self._hooks = [
            module.register_forward_pre_hook(self._enter),
            module.register_forward_hook(self._exit),
        ]

    def _enter(self, module: torch.nn.Module, inputs: tuple) -> None:
        self.inputs += inputs[0].numel() // inputs[0].shape[-1]
        if self.recorded is not None:
            self.recorded.append(inputs[0].detach().cpu().clone())
        self.watch.__enter__()

    def _exit(self, *_: object) -> None:
        self.watch.__exit__()

    def reset(self) -> None:
        self.watch.seconds, self.inputs = 0.0, 0

    def remove(self) -> None:
        """Stop watching the module."""
        for hook in self._hooks:
            hook.remove()


Calls = list[list[torch.Tensor]]
"""Per test image, the positions of each trunk call its render made, in order."""


def measure_trained(depth: int, args: SharingArgs, replay: Calls | None = None) -> tuple[dict, Calls]:
    """Train asmr-nerf at ``depth`` on ``args.scene``, then time renders of its test images (the
    worker of :func:`main` with ``--scene``, run in a fresh process per depth). The trunk alone is
    also timed on ``replay``, another depth's recorded trunk calls (its own if None), so trunks
    of different depths compare on the same positions; returns the row and its own calls."""
    from nerf_loe.benchmarks.methods import BenchmarkArgs, setup_trainer, train_step

    bases = ",".join("x".join([str(b)] * 3) for b in BASES[depth])
    bench = BenchmarkArgs(
        scenes=(args.scene,),
        dataparser="nerfstudio",
        set=(f"bases={bases}",),
        max_steps=args.steps,
        seed=args.seed,
        device=args.device,
    )
    with tempfile.TemporaryDirectory(prefix="nerf_loe_sharing_") as tmp:
        trainer = setup_trainer("asmr-nerf", args.scene, bench, Path(tmp))
        for step in range(args.steps):
            train_step(trainer, step)
            if (step + 1) % 250 == 0:
                print(f"depth {depth}: step {step + 1}/{args.steps}", flush=True)
        pipeline = trainer.pipeline
        pipeline.eval()
        model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
        trunk, cuda = model.field.trunk, args.device == "cuda"
        cameras = dataset.cameras.to(model.device)
        clock = _TrunkClock(trunk, cuda)

        def render(i: int) -> tuple[float, dict]:
            with torch.no_grad(), Stopwatch(cuda) as watch:
                outputs = model.get_outputs_for_camera(cameras[i : i + 1])
            return watch.seconds, outputs

        images = range(len(dataset))
        times: dict[str, list[float]] = {k: [] for k in ("direct", "cold", "warm", "test_set")}
        trunk_s: dict[str, list[float]] = {k: [] for k in times}
        for _ in range(args.repeats):
            # direct: every layer per sample
            model.set_sharing(False)
            clock.reset()
            times["direct"].append(sum(render(i)[0] for i in images) / len(images))
            trunk_s["direct"].append(clock.watch.seconds / len(images))
            model.set_sharing(True)
            # cold: each image from empty tables; warm: the same image again
            cold = warm = cold_trunk = warm_trunk = 0.0
            for i in images:
                trunk.invalidate_tables()
                clock.reset()
                cold += render(i)[0]
                cold_trunk += clock.watch.seconds
                clock.reset()
                warm += render(i)[0]
                warm_trunk += clock.watch.seconds
            times["cold"].append(cold / len(images))
            times["warm"].append(warm / len(images))
            trunk_s["cold"].append(cold_trunk / len(images))
            trunk_s["warm"].append(warm_trunk / len(images))
            # test set: empty tables once, then every image in turn (ns-eval)
            trunk.invalidate_tables()
            trunk.reset_counters()
            clock.reset()
            times["test_set"].append(sum(render(i)[0] for i in images) / len(images))
            trunk_s["test_set"].append(clock.watch.seconds / len(images))
            test_set_macs = trunk.shared_macs_per_sample()
        trunk.invalidate_tables()
        clock.reset()
        psnrs, shaded, calls = [], 0, []
        for i in images:
            clock.recorded = []
            outputs = render(i)[1]
            calls.append(clock.recorded)
            shaded += int(outputs["num_samples_per_ray"].sum())
            batch = {"image": dataset[i]["image"].to(model.device)}
            psnrs.append(float(model.get_image_metrics_and_images(outputs, batch)[0]["psnr"]))
        clock.remove()
        trunk_inputs = clock.inputs / len(images)
        replayed = _replay(trunk, calls if replay is None else replay, args)
    row = {k: statistics.median(v) for k, v in times.items()}
    row.update({f"trunk_{k}": statistics.median(v) for k, v in trunk_s.items()})
    row.update({f"replay_{k}": v for k, v in replayed.items()})
    row.update(
        depth=depth,
        bases="-".join(map(str, BASES[depth])),
        psnr=statistics.mean(psnrs),
        images=len(images),
        trunk_inputs=trunk_inputs,
        shaded=shaded / len(images),
        direct_macs=trunk.macs_per_sample(),
        test_set_macs=test_set_macs,
    )
    print(row, flush=True)
    return row, calls


def _replay(trunk: torch.nn.Module, calls: Calls, args: SharingArgs) -> dict[str, float]:
    """Seconds per image for the trunk alone on recorded calls without gradients (median of
    ``repeats``): cold (empty tables before each image) and as a test set (empty once)."""
    calls = [[x.to(args.device) for x in image] for image in calls]
    cuda = args.device == "cuda"
    times: dict[str, list[float]] = {"cold": [], "test_set": []}
    for _ in range(args.repeats):
        cold, test_set = Stopwatch(cuda), Stopwatch(cuda)
        for image in calls:
            trunk.invalidate_tables()
            with torch.no_grad(), cold:
                for x in image:
                    trunk(x)
        trunk.invalidate_tables()
        for image in calls:
            with torch.no_grad(), test_set:
                for x in image:
                    trunk(x)
        times["cold"].append(cold.seconds / len(calls))
        times["test_set"].append(test_set.seconds / len(calls))
    return {k: statistics.median(v) for k, v in times.items()}


def report_trained(rows: list[dict], args: SharingArgs) -> str:
    base = rows[0]
    title = f"ASMR activation sharing: asmr-nerf render time per test image against depth, {args.device}"
    lines = [
        *report_head(title, "python -m nerf_loe.benchmarks.sharing"),
        "",
        f"{args.scene.name}, {base['images']} test images; asmr-nerf as shipped but for its bases "
        f"(finest cell 1/128 of the box per axis), trained {args.steps} steps at each depth (seed "
        f"{args.seed}); seconds per image, median of {args.repeats} passes over the test images: "
        "whole renders (marching, density pre-pass, heads, compositing), in brackets the trunk's "
        "part. Cold: each image from empty tables; warm: the same image again; test set: empty "
        "tables once, then the images in turn (ns-eval). Trunk inputs: positions the trunk "
        "evaluated per image (pre-pass and shading); shaded: samples composited. Each depth's model "
        "marches its own samples; the replay columns time the trunk alone on the positions of "
        f"depth {base['depth']}'s renders (the same calls for every depth).",
        "",
        "| depth | bases per axis | test PSNR | trunk inputs / shaded per image | direct s | shared cold s "
        "| shared warm s | test set s | cold / depth 4 | test set / depth 4 | replay cold s (/ depth 4) "
        "| replay test set s (/ depth 4) | MACs/sample direct / test set |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        renders = [f"{r[k]:.3f} ({r['trunk_' + k]:.3f})" for k in ("direct", "cold", "warm", "test_set")]
        replays = [
            f"{r['replay_' + k]:.3f} ({r['replay_' + k] / base['replay_' + k]:.2f})"
            for k in ("cold", "test_set")
        ]
        lines.append(
            f"| {r['depth']} | {r['bases']} | {r['psnr']:.2f} "
            f"| {r['trunk_inputs']:,.0f} / {r['shaded']:,.0f} | {' | '.join(renders)} "
            f"| {r['cold'] / base['cold']:.2f} | {r['test_set'] / base['test_set']:.2f} "
            f"| {' | '.join(replays)} | {r['direct_macs']:,d} / {r['test_set_macs']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    install_excepthook()
    tune_cpu_allocator()  # as ns-train has it (the plugin's compat fixes)
    args = tyro.cli(SharingArgs)
    if args.scene is not None:
        if not args.scene.is_dir():
            raise ConfigError(f"--scene {args.scene}: no such dataset folder")
        first, *others = BASES
        row, calls = in_fresh_process(measure_trained, first, args)  # depth 4's calls serve all
        rows = [row] + [in_fresh_process(measure_trained, depth, args, calls)[0] for depth in others]
        text = report_trained(rows, args)
    else:
        rows = measure(args)
        text = report(rows, args, math.prod(args.image) * args.samples)
    save_report(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
