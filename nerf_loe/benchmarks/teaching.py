"""Implicit Neural Teaching benchmark: wall-clock training time (scoring included) for a method to
reach the test PSNR that uniform ray sampling reaches after ``steps`` iterations, with and without
error-driven selection, per seed; the summary gives medians over seeds.

Run: ``python -m nerf_loe.benchmarks.teaching --scene data/woodbox-100x75 --methods mlp-nerf
--variants uniform memory forward --seeds 0 1 2``.

Each (method, variant, seed) trains in its own process from the shipped config (the variant's
teaching options set, the schedules spanning ``steps``), evaluating test PSNR every ``eval_every``
iterations (evaluation not timed). Uniform runs ``steps`` iterations and sets that seed's target;
a teaching run stops at the first evaluation at or above the target, or after ``limit`` times
``steps``. Its time to the target is interpolated linearly in PSNR between the evaluations around
the crossing. Finished runs are stored under ``runs_dir`` and reused (the benchmark resumes).
Writes ``<out>.md`` (table and command), ``<out>.json`` (curves) and ``<out>.png`` (PSNR vs time).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from nerf_loe.benchmarks import beside, in_fresh_process, report_head, save_report, write_atomically
from nerf_loe.benchmarks.methods import (
    RESULTS,
    BenchmarkArgs,
    banks_from_start,
    evaluate,
    method_config_key,
    setup_trainer,
    train_step,
)
from nerf_loe.benchmarks.timing import Stopwatch, time_to
from nerf_loe.errors import ConfigError, install_excepthook

#: the teaching options of each variant (``uniform`` is the baseline: teaching off)
VARIANTS: dict[str, tuple[str, ...]] = {
    "uniform": (),
    "memory": ("datamanager.teaching.enabled=true",),
    "memory-reweight": ("datamanager.teaching.enabled=true", "datamanager.teaching.reweight=true"),
    "forward": (
        "datamanager.teaching.enabled=true",
        "datamanager.teaching.scoring=forward",
        "datamanager.teaching.strategy=incremental",
    ),
}


@dataclass
class TeachingBenchmarkArgs:
    scene: Path = Path("data/woodbox-100x75")
    dataparser: Literal["blender", "nerfstudio"] = "nerfstudio"
    methods: tuple[str, ...] = ("mlp-nerf", "loe-nerf")
    variants: tuple[str, ...] = ("uniform", "memory")
    """Among uniform, memory (remembered errors), memory-reweight (and Soft Mining's loss weights),
    forward (each pool rendered without gradients, INT's incremental re-selection)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 800
    """N: uniform's iterations, whose final test PSNR is the target."""
    eval_every: int = 100
    limit: float = 1.5
    """A teaching run stops at ``limit * steps`` iterations if it has not reached the target."""
    set: tuple[str, ...] = ()
    """Overrides for every run (as the method benchmark's ``--set``)."""
    device: str = "cpu"
    out: Path = RESULTS / "teaching_cpu"
    runs_dir: Path = Path("data/benchmark_runs_teaching")

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"--variants {unknown}: choose from {', '.join(VARIANTS)}")
        if "uniform" not in self.variants:
            raise ConfigError("--variants must include uniform (it sets the target)")
        if self.steps < 1 or self.eval_every < 1 or self.limit < 1.0:
            raise ConfigError("--steps and --eval-every must be >= 1 and --limit >= 1")


@dataclass
class Run:
    method: str
    variant: str
    seed: int
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    """(step, training seconds, test PSNR) at each evaluation."""


def _run(method: str, variant: str, seed: int, target: float | None, args: TeachingBenchmarkArgs) -> Run:
    """Train one run in this process (the worker of :func:`main`)."""
    overrides = args.set + VARIANTS[variant] + banks_from_start(method)
    if variant != "uniform":
        overrides += (f"datamanager.teaching.total_steps={args.steps}", f"datamanager.teaching.seed={seed}")
    bench = BenchmarkArgs(
        device=args.device, seed=seed, dataparser=args.dataparser, set=overrides, train_views=0
    )
    last = args.steps if target is None else int(args.limit * args.steps)
    run = Run(method, variant, seed)
    with tempfile.TemporaryDirectory(prefix="nerf_loe_teaching_") as tmp:
        trainer = setup_trainer(method, args.scene, bench, Path(tmp))
        clock = Stopwatch(cuda=args.device == "cuda")
        for step in range(last):
            with clock:
                train_step(trainer, step)
            if (step + 1) % args.eval_every == 0 or step + 1 == last:
                point = evaluate(trainer.pipeline, step + 1, clock.seconds, 0)
                run.curve.append((step + 1, clock.seconds, point.psnr))
                name = f"{method} {variant} seed {seed}"
                print(f"{name}: step {step + 1}, {clock.seconds:.0f} s, {point.psnr:.2f} dB", flush=True)
                if target is not None and point.psnr >= target:
                    break
    return run


def _stored(args: TeachingBenchmarkArgs, method: str, variant: str, seed: int) -> Path:
    return args.runs_dir / f"{args.scene.name}__{method}__{variant}__{seed}.json"


def _settings(args: TeachingBenchmarkArgs, method: str) -> dict:
    """What a run depends on: every setting but the lists and output paths, and the method's
    registered config (a run stored before a default changed is rerun)."""
    fixed = {
        k: v for k, v in asdict(args).items() if k not in ("methods", "variants", "seeds", "out", "runs_dir")
    }
    fixed["method_config"] = method_config_key(method)
    return json.loads(json.dumps(fixed, default=str))


def save_run(path: Path, args: TeachingBenchmarkArgs, run: Run) -> None:
    write_atomically(path, json.dumps({"settings": _settings(args, run.method), "run": asdict(run)}).encode())


def load_run(path: Path, args: TeachingBenchmarkArgs, method: str) -> Run | None:
    """The stored run, or None when there is none or it was made with other settings."""
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored["settings"] != _settings(args, method):
        return None
    return Run(**stored["run"])


def report(runs: list[Run], args: TeachingBenchmarkArgs) -> str:
    """The markdown table: per method and variant, each seed's time to uniform's PSNR at N and the
    median over seeds, with the ratio against uniform's median time."""
    lines = [
        *report_head(
            f"Teaching benchmark: time to uniform's test PSNR at {args.steps} steps ({args.scene.name})",
            "python -m nerf_loe.benchmarks.teaching",
        ),
        "",
        "| method | variant | target dB (per seed) | seconds to target (per seed) | median s | vs uniform |",
        "|---|---|---|---|---:|---:|",
    ]
    for method in args.methods:
        uniform = {r.seed: r for r in runs if r.method == method and r.variant == "uniform"}
        targets = {seed: r.curve[-1][2] for seed, r in uniform.items()}
        base = [time_to(r.curve, targets[s]) for s, r in uniform.items()]
        base_median = statistics.median([t for t in base if t is not None]) if base else None
        for variant in args.variants:
            chosen = sorted(
                (r for r in runs if r.method == method and r.variant == variant), key=lambda r: r.seed
            )
            if not chosen or any(r.seed not in targets for r in chosen):
                continue
            times = [time_to(r.curve, targets[r.seed]) for r in chosen]
            shown = ", ".join("not reached" if t is None else f"{t:.0f}" for t in times)
            # a run that never reached the target counts as its last evaluation's time (a lower bound)
            bounded = [t if t is not None else r.curve[-1][1] for t, r in zip(times, chosen, strict=True)]
            median = statistics.median(bounded)
            prefix = ">=" if None in times else ""  # unreached runs count their last time: a bound
            ratio = f"{median / base_median:.2f}x" if base_median else "-"
            lines.append(
                f"| {method} | {variant} | {', '.join(f'{targets[r.seed]:.2f}' for r in chosen)} | {shown} | "
                f"{prefix}{median:.0f} | {prefix}{ratio} |"
            )
    return "\n".join(lines) + "\n"


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r.method for r in runs})
    fig, axes = plt.subplots(1, len(methods), figsize=(6 * len(methods), 4), squeeze=False)
    colours = dict(zip(VARIANTS, ("black", "tab:orange", "tab:green", "tab:blue"), strict=True))
    for ax, method in zip(axes[0], methods, strict=True):
        for r in runs:
            if r.method == method:
                seconds = [s for _, s, _ in r.curve]
                psnr = [p for _, _, p in r.curve]
                label = r.variant if r.seed == min(x.seed for x in runs if x.variant == r.variant) else None
                ax.plot(seconds, psnr, color=colours[r.variant], alpha=0.8, label=label, marker=".")
        ax.set_title(method)
        ax.set_xlabel("training seconds (scoring included)")
        ax.set_ylabel("test PSNR (dB)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    install_excepthook()
    args = tyro.cli(TeachingBenchmarkArgs)
    runs: list[Run] = []
    order = ["uniform"] + [v for v in args.variants if v != "uniform"]  # targets first
    for method in args.methods:
        targets: dict[int, float] = {}
        for variant in order:
            for seed in args.seeds:
                path = _stored(args, method, variant, seed)
                run = load_run(path, args, method)
                if run is None:
                    run = in_fresh_process(_run, method, variant, seed, targets.get(seed), args)
                    save_run(path, args, run)
                if variant == "uniform":
                    targets[seed] = run.curve[-1][2]
                runs.append(run)
                text = report(runs, args)
                save_report(args.out, text, [asdict(r) for r in runs])
                plot(runs, beside(args.out, ".png"))
    print(text)


if __name__ == "__main__":
    main()
