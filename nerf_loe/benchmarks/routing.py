"""Routing benchmark: the cost of per-position weight banks against the equal-MAC MLP.

Run: ``python -m nerf_loe.benchmarks.routing [--device cuda] [--chunks 64 128 256]``. Times one
forward + backward of loe-nerf's default trunk (banks 2x2x2, 4x4x4, 4x4x4, 4x4x4, width 128, on
the positional encoding) and of the same trunk with one bank per layer (the PE-MLP, a plain
matmul per layer) on the same samples, for each chunk size of the routed matmul. Positions are
drawn cubed-uniform, so bank loads are uneven as in a real scene. Prints the median of
``repeats`` runs per variant, the variants interleaved round by round so drift hits all alike,
and writes ``<out>.md`` headed by the command.
"""

from __future__ import annotations

import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

from nerf_loe.benchmarks import beside
from nerf_loe.benchmarks.methods import RESULTS
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.components import routing
from nerf_loe.components.tiled_mlp import TiledMLP
from nerf_loe.components.tiling import Tiling

LOE_BANKS = [(2, 2, 2), (4, 4, 4), (4, 4, 4), (4, 4, 4)]


@dataclass
class RoutingArgs:
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    samples: int = 100_000
    features: int = 51
    """Trunk input width (loe-nerf's positional encoding of a 3-D position: 3 + 3 x 2 x 8)."""
    hidden: int = 128
    chunks: tuple[int, ...] = (64, 128, 256)
    repeats: int = 7
    out: Path = field(default_factory=lambda: RESULTS / "routing")


def time_step(mlp: TiledMLP, features: torch.Tensor, x: torch.Tensor) -> float:
    """Seconds for one forward + backward (parameter gradients only, as in training)."""
    with Stopwatch(cuda=features.is_cuda) as watch:
        mlp(features, x).square().mean().backward()
    return watch.seconds


def main() -> None:
    args = tyro.cli(RoutingArgs)
    torch.manual_seed(0)
    x = torch.rand(args.samples, 3, device=args.device).pow(3)
    features = torch.randn(args.samples, args.features, device=args.device)
    trunks = {
        "mlp": TiledMLP(args.features, args.hidden, 16, Tiling([(1, 1, 1)] * len(LOE_BANKS))),
        "loe": TiledMLP(args.features, args.hidden, 16, Tiling(LOE_BANKS)),
    }
    trunks = {k: v.to(args.device) for k, v in trunks.items()}
    variants = [("mlp", None)] + [("loe", c) for c in args.chunks]
    times: dict[tuple[str, int | None], list[float]] = {v: [] for v in variants}
    default_chunk = routing.CHUNK_ROWS
    try:
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for name, chunk in variants:
                routing.CHUNK_ROWS = chunk or default_chunk
                seconds = time_step(trunks[name], features, x)
                if round_:
                    times[(name, chunk)].append(seconds)
    finally:
        routing.CHUNK_ROWS = default_chunk
    mlp_ms = statistics.median(times[("mlp", None)]) * 1e3
    command = "python -m nerf_loe.benchmarks.routing " + shlex.join(sys.argv[1:])
    threads = torch.get_num_threads()
    lines = [
        "# Routing: LoE trunk against the equal-MAC MLP trunk, forward + backward",
        "",
        f"Command: `{command}` ({args.device}, {threads} threads, {args.samples} samples, "
        f"median of {args.repeats})",
        "",
        "| trunk | chunk rows | ms | / MLP |",
        "|---|---:|---:|---:|",
        f"| mlp | - | {mlp_ms:.1f} | 1.00 |",
    ]
    for chunk in args.chunks:
        ms = statistics.median(times[("loe", chunk)]) * 1e3
        lines.append(f"| loe | {chunk} | {ms:.1f} | {ms / mlp_ms:.2f} |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    beside(args.out, ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
