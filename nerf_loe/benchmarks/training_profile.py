"""Training profile: where a loe-nerf-family method's training time goes as training proceeds.

Run: ``python -m nerf_loe.benchmarks.training_profile --scene data/lamppost-100x75 --dataparser
nerfstudio [--set unbounded=false] [--steps 350]``. Every ``every`` iterations it records the mean
time per step and, of that, the marching, the density pre-pass of early stopping and the grid
updates; the samples shaded per ray (after early stopping) and the grid's occupied fraction; test
PSNR at the end. Writes ``<out>.md`` headed by the command. Timings of one process on a quiet
machine; compare runs made one after the other on the same machine.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import tyro

from nerf_loe.benchmarks import report_head, save_report
from nerf_loe.benchmarks.methods import RESULTS, BenchmarkArgs, setup_trainer, train_step
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.errors import ConfigError, install_excepthook


@dataclass
class ProfileArgs:
    scene: Path
    """Dataset folder."""
    method: str = "loe-nerf"
    steps: int = 350
    every: int = 50
    """Iterations per reported row."""
    dataparser: Literal["blender", "nerfstudio"] = "nerfstudio"
    scale_factor: float = 1.0
    """Camera scale of the dataparser (see ``nerf_loe.benchmarks.methods --scale-factor``)."""
    set: tuple[str, ...] = ()
    """Model config overrides, ``key=value`` (see ``nerf_loe.benchmarks.methods --set``)."""
    seed: int = 42
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: Path = field(default_factory=lambda: RESULTS / "training_profile")

    def __post_init__(self) -> None:
        if self.steps < 1 or self.every < 1:
            raise ConfigError("--steps and --every must be >= 1")


class _Timer(Stopwatch):
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn, cuda: bool) -> None:
        super().__init__(cuda)
        self.fn = fn

    def __call__(self, *args, **kwargs):
        with self:
            return self.fn(*args, **kwargs)


def profile(args: ProfileArgs) -> list[dict[str, float]]:
    """Train ``args.steps`` iterations and return one row of figures per ``args.every``."""
    import nerf_loe.rendering.marcher as marcher_module

    bench = BenchmarkArgs(
        dataparser=args.dataparser,
        scale_factor=args.scale_factor,
        set=args.set,
        seed=args.seed,
        device=args.device,
    )
    with tempfile.TemporaryDirectory(prefix="nerf_loe_profile_") as tmp:
        trainer = setup_trainer(args.method, args.scene, bench, Path(tmp))
        model = trainer.pipeline.model
        if not hasattr(model, "marcher"):
            raise ConfigError(
                f"{args.method} has no occupancy-grid marcher to profile; use a nerf_loe method"
            )
        cuda = args.device == "cuda"
        march = _Timer(marcher_module.march, cuda)
        sample = _Timer(model.marcher.sample, cuda)
        update = _Timer(model.marcher.grid.update, cuda)
        marcher_module.march, model.marcher.sample, model.marcher.grid.update = march, sample, update
        try:
            rows, samples, n, start = [], 0.0, 0, time.perf_counter()
            for step in range(args.steps):
                metrics = train_step(trainer, step)
                samples += float(metrics["num_samples_per_batch"])
                n += 1  # iterations in this row
                if n == args.every or step + 1 == args.steps:
                    rays = n * trainer.pipeline.datamanager.get_train_rays_per_batch()
                    rows.append(
                        {
                            "step": step + 1,
                            "ms_per_step": (time.perf_counter() - start) / n * 1000,
                            "march_ms": march.seconds / n * 1000,
                            "prepass_ms": (sample.seconds - march.seconds) / n * 1000,
                            "grid_ms": update.seconds / n * 1000,
                            "samples_per_ray": samples / rays,
                            "occupancy": float(metrics["grid_occupancy"]),
                        }
                    )
                    print(rows[-1], flush=True)
                    march.seconds = sample.seconds = update.seconds = samples = 0.0
                    n, start = 0, time.perf_counter()
        finally:
            marcher_module.march = march.fn
        trainer.pipeline.eval()
        with torch.no_grad():
            psnr = float(trainer.pipeline.get_average_eval_image_metrics(step=args.steps)["psnr"])
    rows.append({"step": args.steps, "test_psnr": psnr})
    return rows


def main() -> None:
    install_excepthook()
    args = tyro.cli(ProfileArgs)
    rows = profile(args)
    lines = [
        *report_head(
            f"Training profile: {args.method} on {args.scene.name} ({args.device})",
            "python -m nerf_loe.benchmarks.training_profile",
        ),
        "",
        "| iterations up to | ms/step | marching | density pre-pass | grid updates "
        "| samples shaded/ray | occupied |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows[:-1]:
        lines.append(
            f"| {r['step']} | {r['ms_per_step']:.0f} | {r['march_ms']:.0f} | {r['prepass_ms']:.0f} "
            f"| {r['grid_ms']:.0f} | {r['samples_per_ray']:.1f} | {r['occupancy']:.3f} |"
        )
    lines += ["", f"Test PSNR after {rows[-1]['step']} iterations: {rows[-1]['test_psnr']:.2f} dB", ""]
    save_report(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
