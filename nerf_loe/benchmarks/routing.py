"""Routing benchmark: the cost of per-position weight banks against the equal-MAC MLP.

Run: ``python -m nerf_loe.benchmarks.routing [--device cuda] [--samples 3000 30000]
[--chunks 64 128 256]``. Times loe-nerf's trunk as configured (banks 2x2x2, 4x4x4, 4x4x4, 4x4x4,
residual, width 128, on the positional encoding) against the same trunk with one bank per layer (the PE-MLP, a
plain matmul per layer) and the modulated form of its banks (``--pipeline.model.residual-form
modulated``: no routing) on the same samples: one forward + backward (training), one training
step (forward, backward and the fused Adam update, as loe-nerf and mlp-nerf train: with loe-nerf's
residual penalty, and what scales with the parameters, 3.3M against 58K) and one forward without
gradients (the early-stopping pre-pass, grid updates, rendering), in the sliced layout
(the CPU's), and in the chunked one (CUDA's) with the chunk size chosen per layout (``auto``) and
each fixed one. Training passes hold ~10-30k samples, pre-pass
windows a few thousand. Positions are drawn cubed-uniform, so bank loads are uneven as in a real
scene. Prints the median of ``repeats`` runs per variant, the variants interleaved round by round
so drift hits all alike, and writes ``<out>.md`` headed by the command.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import torch
import tyro

from nerf_loe.benchmarks import report_head, save_report
from nerf_loe.benchmarks.methods import RESULTS
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.compat.allocator import tune_cpu_allocator
from nerf_loe.components import routing
from nerf_loe.components.tiled_mlp import TiledMLP
from nerf_loe.components.tiling import Tiling, parse_counts
from nerf_loe.method_configs.loe import loe_nerf


@dataclass
class RoutingArgs:
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    samples: tuple[int, ...] = (3_000, 30_000, 100_000)
    features: int = 51
    """Trunk input width (loe-nerf's positional encoding of a 3-D position: 3 + 3 x 2 x 8)."""
    hidden: int = 128
    chunks: tuple[int, ...] = (32, 64, 128, 256)
    """Fixed chunk sizes to time besides the per-layout choice."""
    repeats: int = 7
    compile: bool = False
    """Also time both trunks under ``torch.compile`` (inductor, dynamic shapes; routing stays eager),
    on sample counts that vary by a few rays between passes as in training."""
    out: Path = field(default_factory=lambda: RESULTS / "routing")


Pass = Literal["forward + backward", "training step", "forward, no grad"]


def time_pass(
    mlp: TiledMLP, optimizer: torch.optim.Optimizer, features: torch.Tensor, x: torch.Tensor, kind: Pass
) -> float:
    """Seconds for one pass of ``kind`` (backward: parameter gradients only, as in training)."""
    train = kind != "forward, no grad"
    optimizer.zero_grad(set_to_none=True)
    with Stopwatch(cuda=features.is_cuda) as watch, torch.set_grad_enabled(train):
        out = mlp(features, x)
        if train:
            out.square().mean().backward()
        if kind == "training step":
            optimizer.step()
    return watch.seconds


Variant = tuple[str, routing.Layout, int | None]
"""A trunk name, a routing layout and a fixed chunk size (None: chosen per layout)."""


def time_variants(
    trunks: dict[str, TiledMLP],
    optimizers: dict[str, torch.optim.Optimizer],
    variants: list[Variant],
    n: int,
    kind: Pass,
    args: RoutingArgs,
) -> dict[Variant, float]:
    """Median seconds per variant."""
    times: dict[Variant, list[float]] = {v: [] for v in variants}
    try:
        for round_ in range(args.repeats + 1):  # round 0 warms up
            m = n + 32 * (round_ % 3) if args.compile else n  # compiled graphs must take any count
            x = torch.rand(m, 3, device=args.device).pow(3)
            features = torch.randn(m, args.features, device=args.device)
            for name, layout, chunk in variants:
                routing.LAYOUT, routing.CHUNK_ROWS = layout, chunk
                seconds = time_pass(trunks[name], optimizers[name], features, x, kind)
                if round_:
                    times[(name, layout, chunk)].append(seconds)
    finally:
        routing.LAYOUT, routing.CHUNK_ROWS = "auto", None
    return {v: statistics.median(t) for v, t in times.items()}


def main() -> None:
    tune_cpu_allocator()  # as ns-train has it (the plugin's compat fixes)
    args = tyro.cli(RoutingArgs)
    torch.manual_seed(0)
    loe = loe_nerf.config.pipeline.model
    banks = parse_counts(loe.banks, "loe-nerf's banks")

    def loe_trunk(**banks_as: object) -> TiledMLP:
        """loe-nerf's trunk, its residual banks as configured unless ``banks_as`` says otherwise."""
        options = {"residual_banks": loe.residual_banks, "residual_scale": loe.residual_scale} | banks_as
        return TiledMLP(args.features, args.hidden, 16, Tiling(banks), **options)

    trunks = {
        "mlp": TiledMLP(args.features, args.hidden, 16, Tiling([(1, 1, 1)] * len(banks))),
        "loe": loe_trunk(),
        "loe modulated": loe_trunk(residual_banks=True, residual_form="modulated"),
    }
    trunks = {k: v.to(args.device) for k, v in trunks.items()}
    if loe.penalised:
        for name in ("loe", "loe modulated"):
            trunks[name].decay_residuals(loe.residual_penalty_mult)
    optimizers = {
        k: torch.optim.Adam(v.parameters(), lr=1e-4, eps=1e-15, fused=True) for k, v in trunks.items()
    }
    variants: list[Variant] = [("mlp", "auto", None), ("loe", "slices", None), ("loe", "chunks", None)]
    variants += [("loe", "chunks", c) for c in args.chunks]
    variants += [("loe modulated", "auto", None)]
    if args.compile:
        for name in ("mlp", "loe"):
            trunks[f"{name} compiled"] = torch.compile(trunks[name], dynamic=True)
            optimizers[f"{name} compiled"] = optimizers[name]
        variants += [("mlp compiled", "auto", None), ("loe compiled", "auto", None)]
    threads = torch.get_num_threads()
    lines = [
        *report_head(
            "Routing: LoE trunk against the equal-MAC MLP trunk",
            "python -m nerf_loe.benchmarks.routing",
            f" ({args.device}, {threads} threads, median of {args.repeats}; loe-nerf's residual banks)",
        ),
        "",
        "| pass | samples | MLP ms | "
        + " | ".join(["loe slices", "loe chunks auto"] + [f"loe chunks {c}" for c in args.chunks])
        + " | loe modulated"
        + (" | mlp compiled | loe compiled (auto)" if args.compile else "")
        + " |",
        "|---|---:|---:|" + "---:|" * (len(variants) - 1),
    ]
    for kind in get_args(Pass):
        for n in args.samples:
            times = time_variants(trunks, optimizers, variants, n, kind, args)
            mlp_s = times[("mlp", "auto", None)]
            ratios = [f"{times[v] / mlp_s:.2f}x" for v in variants[1:]]
            lines.append(f"| {kind} | {n} | {mlp_s * 1e3:.1f} | " + " | ".join(ratios) + " |")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    save_report(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
