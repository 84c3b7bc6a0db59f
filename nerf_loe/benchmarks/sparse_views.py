"""Sparse-view benchmark: a dictionary learned over a family (nid-nerf) against prior-free methods
on 3, 6 and 9 views of held-out scenes of that family.

Run: ``python -m nerf_loe.benchmarks.sparse_views [--family mug] [--views 3 6 9]``.

Makes a family collection (``nerf-loe-collection``), trains ``nid-dictionary`` on its training
scenes with the shipped config, then for every held-out scene and view count writes the sparse
split (``nerf-loe-sparse``: test views every 8th, training views spread over the rest) and fits
each method on it through :mod:`nerf_loe.benchmarks.methods`'s harness, each in its own process:
nid-nerf (the frozen dictionary, the code solved), loe-nerf and mlp-nerf with FreeNeRF's
regularisers (frequency release over 0.9 / 0.7 / 0.5 of the run for 3 / 6 / 9 views, occlusion
penalty 0.01), nerfacto as it ships. Test metrics are taken along the way at ``eval_steps``, so
the table gives each method's final test PSNR/SSIM, its fit time, and the time nid-nerf needs to
reach the best baseline's final PSNR. Writes ``<out>.md``, ``<out>.json`` and ``<out>_views.png``
(per scene and view count: ground truth, then each method's render of the middle test view).
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import tyro

from nerf_loe.benchmarks import beside, in_fresh_process, invocation, report_head, save_report
from nerf_loe.benchmarks.methods import (
    RESULTS,
    BenchmarkArgs,
    MethodResult,
    banks_from_start,
    load_run,
    run_method,
    run_store,
    save_run,
    view_grid,
)
from nerf_loe.benchmarks.timing import time_to
from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data.procedural import Family, ProceduralSceneConfig
from nerf_loe.data.sparse import make_sparse
from nerf_loe.errors import ConfigError, install_excepthook

PROGRAM = "python -m nerf_loe.benchmarks.sparse_views"
"""How a user runs this benchmark (the command line in its results)."""

#: FreeNeRF's frequency-release share of the run for 3, 6 and 9 views (Yang et al., CVPR 2023)
FREENERF_FRACTION = {3: 0.9, 6: 0.7, 9: 0.5}
FREENERF_METHODS = ("loe-nerf", "mlp-nerf", "partition-nerf")


@dataclass
class SparseViewArgs:
    family: Family = "mug"
    collection: Path = Path("data/sparse_views/mug")
    """Made here if missing (num_scenes, held_out, width, height, num_views), reused otherwise."""
    num_scenes: int = 18
    held_out: int = 2
    """The last held_out scenes: never seen by the dictionary, the benchmark's scenes."""
    width: int = 48
    height: int = 48
    num_views: int = 40
    dictionary_steps: int = 3000
    views: tuple[int, ...] = (3, 6, 9)
    methods: tuple[str, ...] = ("nid-nerf", "loe-nerf", "mlp-nerf", "nerfacto")
    """The first is the method compared with the best of the others."""
    steps: int = 1000
    """Iterations per fit for the baselines."""
    nid_steps: int = 300
    """Iterations per fit for nid-nerf (CodeNeRF solves a code in about 200)."""
    budget_s: float = 180.0
    """Training seconds at which any fit stops short of its iterations (nerfacto's PyTorch
    fallbacks take seconds a step on a CPU)."""
    eval_steps: tuple[int, ...] = (10, 25, 50, 100, 200, 300, 400, 600, 800)
    """Iterations at which test metrics are measured (the curves for time-to-PSNR)."""
    occlusion_reg_mult: float = 0.01
    seed: int = 42
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: Path = RESULTS / "sparse_views_cpu_mug"
    runs_dir: Path = Path("data/sparse_views/runs")

    def __post_init__(self) -> None:
        unknown = [k for k in self.views if k not in FREENERF_FRACTION]
        if unknown:
            raise ConfigError(f"--views {unknown}: FreeNeRF's schedule is set for 3, 6 and 9 views")
        if not 1 <= self.held_out < self.num_scenes:
            raise ConfigError(f"--held-out {self.held_out} must be in [1, num_scenes={self.num_scenes})")


def ensure_collection(args: SparseViewArgs) -> Path:
    """The family collection, made on first use."""
    if (args.collection / "index.json").is_file():
        return args.collection
    scene = ProceduralSceneConfig(
        width=args.width, height=args.height, num_views=args.num_views, family=args.family
    )
    return make_collection(
        CollectionConfig(num_scenes=args.num_scenes, held_out=args.held_out, scene=scene), args.collection
    )


def train_dictionary(collection: Path, steps: int, seed: int, device: str, output_dir: Path) -> Path:
    """``ns-train nid-dictionary`` with the shipped config on ``collection``; its last checkpoint."""
    from nerfstudio.configs.method_configs import all_methods

    import nerf_loe.method_configs  # noqa: F401

    config = copy.deepcopy(all_methods["nid-dictionary"])
    config.pipeline.datamanager.dataparser.data = collection
    config.pipeline.datamanager.data = collection
    config.max_num_iterations = steps
    config.machine.device_type = device
    config.machine.seed = seed
    config.vis = "tensorboard"
    config.output_dir = output_dir
    config.set_timestamp()
    torch.manual_seed(seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return max(trainer.checkpoint_dir.glob("step-*.ckpt"))


def ensure_dictionary(args: SparseViewArgs, collection: Path) -> Path:
    """The dictionary checkpoint, trained on first use (in its own process)."""
    root = args.collection.parent / f"{args.collection.name}_dictionary_{args.dictionary_steps}"
    found = sorted(root.glob("**/step-*.ckpt"))
    if found:
        return found[-1]
    return in_fresh_process(train_dictionary, collection, args.dictionary_steps, args.seed, args.device, root)


def method_args(args: SparseViewArgs, method: str, views: int, dictionary: Path) -> BenchmarkArgs:
    """The harness's settings for one fit: the method's step count and its sparse-view options."""
    overrides: tuple[str, ...] = ()
    if method.startswith("nid"):
        overrides = (f"dictionary={dictionary.resolve()}",)
    elif method in FREENERF_METHODS:
        overrides = (
            f"frequency_reg_fraction={FREENERF_FRACTION[views]}",
            f"occlusion_reg_mult={args.occlusion_reg_mult}",
        ) + banks_from_start(method)
    steps = args.nid_steps if method.startswith("nid") else args.steps
    return BenchmarkArgs(
        methods=(method,),
        budget_s=args.budget_s,
        max_steps=steps,
        equal_steps=steps,
        eval_fractions=(),
        eval_steps=tuple(s for s in args.eval_steps if s < steps),
        train_views=min(views, 3),
        dataparser="blender",
        set=overrides,
        seed=args.seed,
        device=args.device,
        out=args.out,
        runs_dir=args.runs_dir,
    )


def run(args: SparseViewArgs) -> list[tuple[int, MethodResult]]:
    collection = ensure_collection(args)
    dictionary = ensure_dictionary(args, collection)
    held_out = json.loads((collection / "index.json").read_text())["held_out"]
    results: list[tuple[int, MethodResult]] = []
    for views in args.views:
        for name in held_out:
            split = make_sparse(
                collection / name, args.collection.parent / "sparse" / f"{name}_{views}views", views
            )
            for method in args.methods:
                settings = method_args(args, method, views, dictionary)
                stored = run_store(settings, split, method)
                result = load_run(stored, settings, split, method)
                if result is None:
                    result = in_fresh_process(run_method, method, split, settings)
                    save_run(stored, settings, split, method, result)
                results.append((views, result))
                print(
                    f"{split.name} {method}: {result.curve[-1].psnr:.2f} dB, {result.train_s:.0f} s",
                    flush=True,
                )
                write_report(results, args)
    return results


def _reach(result: MethodResult, target: float) -> float | None:
    return time_to([(p.step, p.train_s, p.psnr) for p in result.curve], target)


def comparison(results: list[MethodResult], first: str) -> dict:
    """For one scene and view count: ``first``'s margin over the best other method (by final test
    PSNR), that method's time to its own final PSNR, ``first``'s time to it, and their ratio (None
    when ``first`` never gets there)."""
    ours = next(r for r in results if r.method == first)
    best = max((r for r in results if r.method != first), key=lambda r: r.curve[-1].psnr)
    target = best.curve[-1].psnr
    best_s, ours_s = _reach(best, target), _reach(ours, target)
    return {
        "best": best.method,
        "margin": ours.curve[-1].psnr - target,
        "best_s": best_s,
        "ours_s": ours_s,
        "ratio": None if ours_s is None else ours_s / best_s,
    }


def _share(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:.3f}x"


def write_report(results: list[tuple[int, MethodResult]], args: SparseViewArgs) -> str:
    methods = list(dict.fromkeys(r.method for _, r in results))
    first = args.methods[0]
    title = f"Sparse-view benchmark: held-out {args.family} scenes, {args.width}x{args.height}, {args.device}"
    lines = [
        *report_head(title, PROGRAM),
        "",
        f"Dictionary: {args.num_scenes - args.held_out} training scenes, {args.dictionary_steps} steps. "
        f"Fits: {first} {args.nid_steps} steps, others {args.steps} steps, each at most "
        f"{args.budget_s:.0f} s; loe-nerf and mlp-nerf with "
        "FreeNeRF's regularisers. Test PSNR / SSIM on every 8th view; seconds of training (evaluation "
        f"excluded). 'to best': seconds {first} needs to reach the best other method's final PSNR, "
        "against that method's own seconds to it.",
        "",
        "| views | scene | "
        + " | ".join(f"{m} PSNR / SSIM / s" for m in methods)
        + f" | {first} margin | to best |",
        "|---|---|" + "---:|" * (len(methods) + 2),
    ]
    margins: dict[int, list[float]] = {}
    ratios: dict[int, list[float]] = {}
    for views in args.views:
        for scene in dict.fromkeys(r.scene for v, r in results if v == views):
            row = [r for v, r in results if v == views and r.scene == scene]
            cells = []
            for m in methods:
                r = next((r for r in row if r.method == m), None)
                cells.append(
                    "-" if r is None else f"{r.curve[-1].psnr:.2f} / {r.curve[-1].ssim:.3f} / {r.train_s:.0f}"
                )
            versus = "- | -"
            if len(row) > 1 and any(r.method == first for r in row):
                c = comparison(row, first)
                margins.setdefault(views, []).append(c["margin"])
                ratios.setdefault(views, []).append(math.inf if c["ratio"] is None else c["ratio"])
                ours = "not reached" if c["ours_s"] is None else f"{c['ours_s']:.1f} s ({c['ratio']:.3f}x)"
                versus = f"{c['margin']:+.2f} ({c['best']}) | {ours} vs {c['best_s']:.1f} s"
            lines.append(f"| {views} | {scene} | " + " | ".join(cells) + f" | {versus} |")
    lines += [
        "",
        f"Over held-out scenes: {first} minus the best other method, test PSNR (dB), and {first}'s "
        "time to that method's final PSNR as a share of that method's own:",
        "",
        "| views | margin median | worst | time share median | worst |",
        "|---|---:|---:|---:|---:|",
    ]
    for views, values in margins.items():
        shares = ratios[views]
        lines.append(
            f"| {views} | {statistics.median(values):+.2f} | {min(values):+.2f} "
            f"| {_share(statistics.median(shares))} | {_share(max(shares))} |"
        )
    lines += ["", f"Middle test view; columns: ground truth, {', '.join(methods)}.", ""]
    lines.append(f"![renders]({args.out.name}_views.png)")
    text = "\n".join(lines) + "\n"
    images = ("view", "target")
    payload = {
        "command": invocation(PROGRAM),
        "settings": json.loads(json.dumps(asdict(args), default=str)),
        "results": [
            {"views": v, **{k: x for k, x in asdict(r).items() if k not in images}} for v, r in results
        ],
    }
    save_report(args.out, text, payload)
    view_grid([r for _, r in results], beside(args.out, "_views.png"))  # rows: <scene>_<k>views
    return text


def main() -> None:
    install_excepthook()
    args = tyro.cli(SparseViewArgs)
    print(write_report(run(args), args))


if __name__ == "__main__":
    main()
