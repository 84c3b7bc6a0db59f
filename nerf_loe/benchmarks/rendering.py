"""Rendering-core benchmark: marching and rendering throughput, memory, and a training-step profile.

Run: ``python -m nerf_loe.benchmarks.rendering [--device cuda] [--backend torch]``. Prints samples
per second for marching (bounded: one grid level, constant steps; unbounded: four levels, cone
angle 1/256) and for packed rendering over 1k-64k rays (median of several runs), the peak memory, the grid
occupancy, and one loe-nerf training step split into its parts, on a grid fitted to a sphere
shell's density so it culls as in real training.
"""

from __future__ import annotations

import resource
import statistics
from dataclasses import dataclass

import torch
import tyro

from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.components.tiling import Tiling
from nerf_loe.fields.radiance_field import LoETrunk, RadianceField
from nerf_loe.rendering.backend import Backend, resolve_backend
from nerf_loe.rendering.marcher import GridMarcher, GridMarcherConfig
from nerf_loe.rendering.volume_rendering import render_weights


@dataclass
class Args:
    device: str = "cpu"
    backend: Backend = "auto"
    """auto: nerfacc's kernels on CUDA where they load; torch forces PyTorch (the same samples)"""
    repeats: int = 5
    ray_counts: tuple[int, ...] = (1024, 4096, 16384, 65536)


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        with Stopwatch(cuda=device == "cuda") as watch:
            fn()
        times.append(watch.seconds)
    return statistics.median(times)


def shell_density(x: torch.Tensor) -> torch.Tensor:
    r = x.norm(dim=-1)
    return torch.where((r > 0.5) & (r < 0.6), 50.0, 0.0)


def rays(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    o = torch.randn(n, 3, device=device)
    o = o / o.norm(dim=-1, keepdim=True) * 3
    d = torch.rand(n, 3, device=device) * 1.2 - 0.6 - o
    return o, d / d.norm(dim=-1, keepdim=True)


def main() -> None:
    args = tyro.cli(Args)
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1], device=args.device)
    marchers = {
        name: GridMarcher(
            GridMarcherConfig(grid_resolution=64, early_stop="none", backend=args.backend),
            aabb,
            unbounded=name == "unbounded",
        ).to(args.device)
        for name in ("bounded", "unbounded")
    }
    for m in marchers.values():
        for step in range(0, 256, 16):
            m.grid.update(step, shell_density, m.step_size)
        m.train()
    marcher, unbounded = marchers["bounded"], marchers["unbounded"]
    backend = resolve_backend(args.backend, aabb)
    occupancy = marcher.grid.occupied_fraction()
    print(f"device {args.device}, backend {backend}; grid occupancy {occupancy:.3f} (sphere shell)")
    print("| rays | samples | march Msamples/s | unbounded march Msamples/s | render Msamples/s | peak MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.ray_counts:
        o, d = rays(n, args.device)
        samples = marcher.sample(o, d)
        sigmas = shell_density(samples.positions(o, d)).requires_grad_()
        t_march = timed(lambda o=o, d=d: marcher.sample(o, d), args.repeats, args.device)
        m_unbounded = len(unbounded.sample(o, d))
        t_unbounded = timed(lambda o=o, d=d: unbounded.sample(o, d), args.repeats, args.device)

        def render(samples=samples, sigmas=sigmas, n=n):
            s = samples
            w, _, _ = render_weights(s.t_starts, s.t_ends, sigmas, s.ray_indices, n, backend)
            w.sum().backward()

        t_render = timed(render, args.repeats, args.device)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            marcher.sample(o, d)
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            marcher.sample(o, d)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS
        m = len(samples)
        print(
            f"| {n} | {m} | {m / t_march / 1e6:.2f} | {m_unbounded / t_unbounded / 1e6:.2f} "
            f"| {m / t_render / 1e6:.2f} | {peak:.1f} |"
        )

    # one training step of the LoE field, by part (density early stop, the default)
    marcher.config.early_stop = "density"
    tiling = Tiling([(2, 2, 2), (4, 4, 4), (4, 4, 4), (4, 4, 4)])
    field = RadianceField(aabb.view(2, 3), LoETrunk(tiling, out_dim=16)).to(args.device)
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-3)
    o, d = rays(4096, args.device)
    parts: dict[str, list[float]] = {}

    def clock(name: str, fn):
        with Stopwatch(cuda=args.device == "cuda") as watch:
            out = fn()
        parts.setdefault(name, []).append(watch.seconds)
        return out

    for step in range(args.repeats):
        clock(
            "grid update (every 16 steps, amortised)",
            lambda s=step: marcher.grid.update(256 + s * 16, field.density_at, marcher.step_size),
        )
        samples = clock(
            "marching + early-stop density pre-pass",
            lambda o=o, d=d: marcher.sample(o, d, field.density_at),
        )
        pos = samples.positions(o, d)
        sigma = clock("field forward (density trunk)", lambda pos=pos: field.density_at(pos))
        loss = clock(
            "rendering",
            lambda s=samples, sg=sigma: (
                render_weights(s.t_starts, s.t_ends, sg, s.ray_indices, 4096, backend)[0].square().sum()
            ),
        )
        clock("backward", loss.backward)
        clock("optimizer", lambda: (optimizer.step(), optimizer.zero_grad()))
    amortised = "grid update (every 16 steps, amortised)"
    parts[amortised] = [t / 16 for t in parts[amortised]]
    total = sum(statistics.median(v) for v in parts.values())
    print(f"\ntraining step, 4096 rays, {len(samples)} samples: {total * 1e3:.1f} ms (median per part)")
    for name, values in parts.items():
        med = statistics.median(values)
        print(f"  {name:<42} {med * 1e3:8.1f} ms  {100 * med / total:5.1f}%")


if __name__ == "__main__":
    main()
