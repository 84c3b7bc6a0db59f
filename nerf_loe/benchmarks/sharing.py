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
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nerf_loe.benchmarks import beside, report_head
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.compat.allocator import tune_cpu_allocator
from nerf_loe.components.asmr import ASMR, Backbone
from nerf_loe.errors import install_excepthook
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
        f"{args.views} views around the box rendered in turn from cold tables, seconds per image.",
        "",
        "| depth | bases per axis | direct s | shared cold s | shared warm s | cold / depth 4 "
        "| warm / depth 4 | test set s | test set / depth 4 | MACs/sample direct | cold | warm | test set "
        "| tables MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['depth']} | {r['bases']} | {r['direct']:.3f} | {r['cold']:.3f} | {r['warm']:.3f} "
            f"| {r['cold'] / base['cold']:.2f} | {r['warm'] / base['warm']:.2f} | {r['test_set']:.3f} "
            f"| {r['test_set'] / base['test_set']:.2f} | {r['direct_macs']:,d} | {r['cold_macs']:,.0f} "
            f"| {r['warm_macs']:,.0f} | {r['test_set_macs']:,.0f} | {r['table_mib']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    install_excepthook()
    tune_cpu_allocator()  # as ns-train has it (the plugin's compat fixes)
    args = tyro.cli(SharingArgs)
    rows = measure(args)
    text = report(rows, args, math.prod(args.image) * args.samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    beside(args.out, ".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
