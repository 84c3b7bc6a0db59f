"""Optimizer step cost: torch's default Adam against its fused kernel, on each method's parameters.

Run: ``python -m nerf_loe.benchmarks.optimizer [--repeats 30] [--device cuda]``.

Builds each method's model as ``ns-train`` configures it (parameters only, no data), gives every
parameter a random gradient and times ``optimizer.step()`` for the implementations interleaved in
one process (median of ``repeats``), so machine noise hits them alike. Writes ``<out>.md``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro
from nerfstudio.data.scene_box import SceneBox

from nerf_loe.benchmarks import report_head, save_report
from nerf_loe.benchmarks.methods import RESULTS
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.compat.allocator import tune_cpu_allocator
from nerf_loe.errors import install_excepthook
from nerf_loe.method_configs.asmr import asmr_nerf
from nerf_loe.method_configs.loe import loe_nerf, mlp_nerf, partition_nerf

METHODS = {spec.config.method_name: spec for spec in (loe_nerf, mlp_nerf, partition_nerf, asmr_nerf)}
IMPLEMENTATIONS = {
    "default": {"foreach": False, "fused": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}
"""torch.optim.Adam's implementations: the single-tensor loop (torch's default on the CPU), the
multi-tensor one (its default on CUDA), and the fused kernel the methods use."""


@dataclass
class OptimizerArgs:
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    repeats: int = 30
    out: Path = field(default_factory=lambda: RESULTS / "optimizer")


def field_parameters(method: str, device: str) -> list[torch.nn.Parameter]:
    """The parameters ``ns-train <method>`` optimises, in a model built without data."""
    config = METHODS[method].config.pipeline.model
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    model = config.setup(scene_box=box, num_train_data=1, metadata={}).to(device)
    return list(model.get_param_groups()["fields"])


def time_steps(params: list[torch.nn.Parameter], repeats: int, lr: float) -> dict[str, float]:
    """Median seconds of one ``Adam.step()`` per implementation, the implementations interleaved."""
    optimizers = {}
    for name, kwargs in IMPLEMENTATIONS.items():
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for p in copies:
            p.grad = torch.randn_like(p)
        optimizers[name] = torch.optim.Adam(copies, lr=lr, eps=1e-15, **kwargs)
        optimizers[name].step()  # the moments exist from here on, as after a first training step
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(repeats):
        for name, optimizer in optimizers.items():
            with Stopwatch(cuda=params[0].is_cuda) as watch:
                optimizer.step()
            times[name].append(watch.seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    install_excepthook()
    tune_cpu_allocator()  # as ns-train has it (the plugin's compat fixes)
    args = tyro.cli(OptimizerArgs)
    torch.manual_seed(0)
    lines = [
        *report_head(
            "Optimizer step: torch's Adam implementations on each method's parameters",
            "python -m nerf_loe.benchmarks.optimizer",
            f" ({args.device}, {torch.get_num_threads()} threads, median of {args.repeats})",
        ),
        "",
        "| method | parameters | "
        + " | ".join(f"{name} ms" for name in IMPLEMENTATIONS)
        + " | default / fused |",
        "|---|---:|" + "---:|" * (len(IMPLEMENTATIONS) + 1),
    ]
    for method, spec in METHODS.items():
        params = field_parameters(method, args.device)
        lr = spec.config.optimizers["fields"]["optimizer"].lr
        times = time_steps(params, args.repeats, lr)
        cells = " | ".join(f"{times[name] * 1e3:.2f}" for name in IMPLEMENTATIONS)
        n = sum(p.numel() for p in params)
        lines.append(f"| {method} | {n:,} | {cells} | {times['default'] / times['fused']:.1f}x |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    save_report(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
