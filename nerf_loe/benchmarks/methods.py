"""Method benchmark: loe-nerf against its equal-MAC baselines, asmr-nerf and nerfstudio's nerfacto.

Run: ``python -m nerf_loe.benchmarks.methods [--width 100 --height 75] [--budget-s 600]``.

Every method trains with its shipped config (only the data and device are set) on the same
scene and split (the demo POV-Ray scene by default, Blender format), each in its own process so
its peak memory is its own. Training stops after ``budget_s`` seconds of training time (evaluation
is not counted) or ``max_steps``. Test-view PSNR/SSIM are measured at fractions of the budget and
at ``equal_steps`` iterations, giving the equal-time and equal-iteration comparisons; PSNR on a
few training views is measured alongside, so fitting (capacity) and generalisation separate. Writes
``<out>.md`` (the table and the command), ``<out>.json`` (the curves) and ``<out>.png`` (PSNR vs
training time and vs iteration).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import random
import re
import resource
import statistics
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from torch import nn

from nerf_loe.benchmarks import (
    beside,
    in_fresh_process,
    invocation,
    report_head,
    save_report,
    write_atomically,
)
from nerf_loe.benchmarks.timing import Stopwatch
from nerf_loe.errors import ConfigError, install_excepthook

PROGRAM = "python -m nerf_loe.benchmarks.methods"
"""How a user runs this benchmark (the command line in its results)."""

RESULTS = Path(__file__).parent / "results"


@dataclass
class BenchmarkArgs:
    scenes: tuple[Path, ...] = ()
    """Datasets (one folder each); every method trains on each. Default: the demo scene (chess2)
    rendered at width x height under data/. With several, the summary gives each method's median
    and worst scene."""
    width: int = 100
    height: int = 75
    methods: tuple[str, ...] = ("loe-nerf", "mlp-nerf", "partition-nerf", "asmr-nerf", "nerfacto")
    budget_s: float = 600.0
    """Training wall-clock per method, seconds (evaluation excluded)."""
    max_steps: int = 1_000_000
    """Iteration cap; when set, it is also the trainer's ``max_num_iterations``, so schedules that
    span a run (FreeNeRF's frequency release) end with it."""
    equal_steps: int = 1000
    """Iteration at which methods are also compared (methods that don't reach it in budget show '-')."""
    eval_fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    """Points of the budget at which test metrics are measured (the curve of the plot)."""
    eval_steps: tuple[int, ...] = ()
    """Iterations at which test metrics are measured too (a curve by steps)."""
    scale_factor: float = 1.0
    """Blender dataparser's camera scale: below 1 the orbit shrinks, so more of a scene that overflows
    the fixed [-1.5, 1.5]^3 box (the demo's board and table) falls inside the modelled volume."""
    train_views: int = 4
    """Training views also scored at every evaluation (0: none). Fitting error separates capacity
    (how well the network fits what it saw) from generalisation to the test views."""
    dataparser: Literal["blender", "nerfstudio"] = "blender"
    """blender: Blender format, RGBA composited on white at load; nerfstudio: nerfstudio format
    (transforms.json), images kept as they are (alpha too), poses auto-scaled into the box."""
    set: tuple[str, ...] = ()
    """Config overrides for every method of this package, as dotted ``key=value`` under the model
    config, e.g. ``background_color=white marcher.early_stop=none``, under the data manager's
    with a ``datamanager.`` prefix, e.g. ``datamanager.teaching.enabled=true``, or under the
    trainer's with ``trainer.``, e.g. ``trainer.optimizers.fields.optimizer.lr=1e-3``; an item
    written ``<method>:key=value`` applies to that method only."""
    seed: int = 42
    """Seeds Python, NumPy and torch before each method trains, as ns-train does (runs repeat on
    one machine; compare seeds to see run-to-run variation)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: Path = RESULTS / "methods_cpu"
    """Output stem: writes .md, .json and .png."""
    runs_dir: Path = Path("data/benchmark_runs")
    """Each finished (scene, method) run is stored here and reused by a later invocation with the
    same settings, so a benchmark of hours resumes where it stopped; the report is rewritten after
    every run."""

    def __post_init__(self) -> None:
        if not self.scale_factor > 0:
            raise ConfigError(f"--scale-factor must be positive, got {self.scale_factor}")
        for item in self.set:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: write key=value, e.g. marcher.early_stop=none")


def _convert(text: str, annotation: object) -> object:
    """``text`` as a value of the option type ``annotation`` (bool, int, float, str, Literal, a
    tuple of those written comma-separated, optionally ``| None``; ``none`` gives None where None
    is allowed)."""
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (types.UnionType, typing.Union)
        else ()
    )
    kinds = [a for a in options if a is not type(None)] or [annotation]
    if text.lower() == "none" and type(None) in options:
        return None
    kind = kinds[0]
    if typing.get_origin(kind) is tuple:  # comma-separated items, e.g. banks=2x2x2,4x4x4
        item = typing.get_args(kind)[0]
        return tuple(_convert(part, item) for part in text.split(","))
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"--set: {text!r} is not a boolean (true or false)")
        return text.lower() in ("true", "1", "yes")
    if kind in (int, float):
        return kind(text)
    return text


def overrides_for(method: str, overrides: tuple[str, ...]) -> tuple[str, ...]:
    """The ``--set`` items for ``method``: unqualified ones, and ``<method>:key=value`` ones for it.

    Example:
        >>> overrides_for("loe-nerf", ("hidden_dim=64", "loe-nerf:residual_banks=true", "asmr-nerf:w0=10"))
        ('hidden_dim=64', 'residual_banks=true')
    """
    chosen = []
    for item in overrides:
        qualifier = _qualifier(item)
        if qualifier is None:
            chosen.append(item)
        elif qualifier == method:
            chosen.append(item[len(qualifier) + 1 :])
    return tuple(chosen)


def banks_from_start(method: str) -> tuple[str, ...]:
    """The ``--set`` item that makes loe-nerf's banks act from the start, for benchmarks whose short
    fits would otherwise end before its release (step 1000) and train its MLP; none for the rest."""
    return ("residual_release_step=0",) if method == "loe-nerf" else ()


def _qualifier(item: str) -> str | None:
    """The method a ``--set`` item names (``<method>:key=value``), None for an unqualified one."""
    qualifier, _, rest = item.partition(":")
    return qualifier if rest and "=" not in qualifier else None  # a value may hold a colon


def check_qualifiers(methods: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """A ConfigError for a ``--set`` item that would reach no run: one naming a method not
    benchmarked, or nerfacto (which runs as shipped)."""
    for item in overrides:
        qualifier = _qualifier(item)
        if qualifier == "nerfacto":
            raise ConfigError(f"--set {item!r}: nerfacto runs as shipped, without overrides")
        if qualifier is not None and qualifier not in methods:
            raise ConfigError(f"--set {item!r}: {qualifier} is not among --methods {' '.join(methods)}")


def apply_overrides(
    model_config: object,
    overrides: tuple[str, ...],
    datamanager_config: object = None,
    trainer_config: object = None,
) -> None:
    """Set dotted ``key=value`` overrides on a model config (on the data manager's config for keys
    starting ``datamanager.``, on the trainer's for ``trainer.``, whose dicts take keys too, e.g.
    ``trainer.optimizers.fields.optimizer.lr=1e-3``), converted to each option's type; the changed
    configs are checked."""
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, name = key.split(".")
        target, where = model_config, "model"
        if parents and parents[0] == "datamanager" and datamanager_config is not None:
            target, where, parents = datamanager_config, "data manager", parents[1:]
        elif parents and parents[0] == "trainer" and trainer_config is not None:
            target, where, parents = trainer_config, "trainer", parents[1:]
        for part in parents:
            target = target.get(part) if isinstance(target, dict) else getattr(target, part, None)
        if target is None or not hasattr(target, name):
            raise ConfigError(f"--set {item!r}: the {where} config has no option {key!r}")
        setattr(target, name, _convert(value, typing.get_type_hints(type(target))[name]))
        if hasattr(target, "__post_init__") and target is not model_config:
            target.__post_init__()
    if overrides and hasattr(model_config, "__post_init__"):
        model_config.__post_init__()


@dataclass
class EvalPoint:
    step: int
    train_s: float
    psnr: float
    ssim: float
    train_psnr: float | None = None
    """Mean PSNR over ``train_views`` training views (None when not measured)."""
    shared_macs: float | None = None
    """Field MACs executed per sample over the test set, for trunks that share activations (ASMR):
    tables built once for the evaluation and reused across its images, as ns-eval renders."""


@dataclass
class MethodResult:
    method: str
    steps: int
    train_s: float
    rays_per_batch: int
    rays_per_s: float
    macs_per_sample: int
    macs_note: str
    params: int
    peak_mb: float
    curve: list[EvalPoint]
    scene: str = ""
    view: np.ndarray | None = None
    """The middle test view rendered at the end of training, [H, W, 3] uint8 (not written to JSON)."""
    target: np.ndarray | None = None
    """That view's ground truth as scored, [H, W, 3] uint8 (not written to JSON)."""
    render_s: float = 0.0
    """Seconds to render that view (no gradients, the model's evaluation chunking)."""
    render_macs_per_sample: float | None = None
    """Field MACs executed per sample in that render (tables built for it), for trunks that share
    activations (ASMR)."""


def _sharing_trunk(model: nn.Module) -> nn.Module | None:
    """The field's trunk if it shares activations and counts the MACs it executes (ASMR)."""
    trunk = getattr(getattr(model, "field", None), "trunk", None)
    return trunk if hasattr(trunk, "shared_macs_per_sample") else None


def _count_shared_macs(model: nn.Module, trunk: nn.Module) -> Callable[[], float]:
    """Start counting a sharing trunk's executed MACs from empty tables; the returned function gives
    the field's MACs per sample since: the trunk's as executed plus the other parts' (the colour
    head runs per sample)."""
    trunk.invalidate_tables()
    trunk.reset_counters()
    others = sum(m for part, (m, _) in model.field.complexity().items() if part != "trunk")
    return lambda: trunk.shared_macs_per_sample() + others


def macs_per_sample(model: nn.Module) -> tuple[int, str]:
    """MACs per sample of the model's field: its own count, else the field's linear layers."""
    field = getattr(model, "field", model)
    if hasattr(field, "complexity"):
        return sum(m for m, _ in field.complexity().values()), ""
    linear = sum(m.in_features * m.out_features for m in field.modules() if isinstance(m, nn.Linear))
    return linear, "field MLPs only (no hash lookups, no proposal networks)"


def _train_view_psnr(pipeline, views: int) -> float | None:
    """Mean PSNR of full renders of ``views`` training images, evenly spaced over the split."""
    if views <= 0:
        return None
    dataset = pipeline.datamanager.train_dataset
    model = pipeline.model
    cameras = dataset.cameras.to(model.device)
    psnrs = []
    for i in torch.linspace(0, len(dataset) - 1, min(views, len(dataset))).round().long().tolist():
        outputs = model.get_outputs_for_camera(cameras[i : i + 1])
        batch = {"image": dataset[i]["image"].to(model.device)}
        psnrs.append(model.get_image_metrics_and_images(outputs, batch)[0]["psnr"])
    return float(sum(psnrs) / len(psnrs))


def _middle_test_view(pipeline) -> tuple[np.ndarray, np.ndarray, float, float | None]:
    """The middle test image and the model's render of it, as they are scored (RGBA data composited
    on the evaluation background), [H, W, 3] uint8 each; the render's seconds, and the trunk's
    executed MACs per sample where it counts them. The middle one: with views ordered along a
    spiral, as the data tools write them, the first test view is the lowest camera, below every
    training view, and is rendered worst by every method (12.6 dB on lamppost where the mean over
    test views is 24 dB)."""
    pipeline.eval()
    dataset = pipeline.datamanager.eval_dataset
    model = pipeline.model
    trunk = _sharing_trunk(model)
    # the first render after training: tables built for it, not reused from the evaluation
    counted = _count_shared_macs(model, trunk) if trunk is not None else None
    i = len(dataset) // 2
    with torch.no_grad():
        with Stopwatch(cuda=model.device.type == "cuda") as watch:
            outputs = model.get_outputs_for_camera(dataset.cameras[i : i + 1].to(model.device))
        target = dataset[i]["image"].to(model.device)
        if hasattr(model, "composite"):
            rgb, target = model.composite(outputs, target)
        else:
            rgb, target = outputs["rgb"], target[..., :3]
    pipeline.train()
    target, rgb = ((t.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8) for t in (target, rgb))
    return target, rgb, watch.seconds, counted() if counted is not None else None


def evaluate(pipeline, step: int, train_s: float, train_views: int) -> EvalPoint:
    """Test-set PSNR and SSIM, the mean PSNR of ``train_views`` training views, and for a sharing
    trunk the field's MACs executed per sample over the test set, counted from empty tables."""
    pipeline.eval()
    trunk = _sharing_trunk(pipeline.model)
    counted = _count_shared_macs(pipeline.model, trunk) if trunk is not None else None
    with torch.no_grad():
        metrics = pipeline.get_average_eval_image_metrics(step=step)
        shared_macs = counted() if counted is not None else None
        pipeline.eval()  # nerfstudio's evaluation ends in training mode (random backgrounds, ...)
        train_psnr = _train_view_psnr(pipeline, train_views)
    pipeline.train()
    return EvalPoint(step, train_s, float(metrics["psnr"]), float(metrics["ssim"]), train_psnr, shared_macs)


def run_method(method: str, scene: Path, args: BenchmarkArgs) -> MethodResult:
    """Train one method for the budget in this process and measure it (the worker of :func:`main`)."""
    with tempfile.TemporaryDirectory(prefix="nerf_loe_bench_") as tmp:
        return _train_and_measure(method, scene, args, Path(tmp))


def setup_trainer(method: str, scene: Path, args: BenchmarkArgs, output_dir: Path):
    """A nerfstudio Trainer for ``method`` on ``scene`` with the benchmark's data, overrides, device
    and seed (also used by :mod:`nerf_loe.benchmarks.training_profile`)."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    import nerf_loe.method_configs  # noqa: F401  (offline LPIPS, checkpoint fixes)

    config = copy.deepcopy(all_methods[method])
    own = config.pipeline.datamanager.dataparser
    if args.dataparser == "blender":
        dataparser = BlenderDataParserConfig(data=scene, scale_factor=args.scale_factor)
    elif isinstance(own, NerfstudioDataParserConfig):  # the method's own settings (our center: focus)
        dataparser = dataclasses.replace(own, data=scene, scale_factor=args.scale_factor)
    else:
        dataparser = NerfstudioDataParserConfig(data=scene, scale_factor=args.scale_factor)
    config.pipeline.datamanager.dataparser = dataparser
    if method != "nerfacto":
        apply_overrides(
            config.pipeline.model, overrides_for(method, args.set), config.pipeline.datamanager, config
        )
    config.pipeline.datamanager.data = scene
    if args.max_steps != BenchmarkArgs.max_steps:
        config.max_num_iterations = args.max_steps
    config.machine.device_type = args.device
    config.machine.seed = args.seed
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    config.vis = "tensorboard"
    config.output_dir = output_dir
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="test")
    return trainer


def train_step(trainer, step: int) -> dict:
    """One training iteration with its callbacks, as ``ns-train`` runs it; returns the metrics."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    trainer.pipeline.train()
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    _, _, metrics = trainer.train_iteration(step)
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return metrics


def _train_and_measure(method: str, scene: Path, args: BenchmarkArgs, output_dir: Path) -> MethodResult:
    trainer = setup_trainer(method, scene, args, output_dir)
    pipeline = trainer.pipeline
    rays_per_batch = pipeline.datamanager.get_train_rays_per_batch()
    macs, note = macs_per_sample(pipeline.model)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    checkpoints = sorted(f * args.budget_s for f in args.eval_fractions)
    curve: list[EvalPoint] = []
    training, train_s, step = Stopwatch(cuda=args.device == "cuda"), 0.0, 0
    while step < args.max_steps and train_s < args.budget_s:
        with training:
            train_step(trainer, step)
        train_s = training.seconds
        step += 1
        if (checkpoints and train_s >= checkpoints[0]) or step == args.equal_steps or step in args.eval_steps:
            checkpoints = [c for c in checkpoints if c > train_s]  # one evaluation for all passed
            curve.append(evaluate(pipeline, step, train_s, args.train_views))
            print(f"{method}: step {step}, {train_s:.0f} s, test PSNR {curve[-1].psnr:.2f} dB", flush=True)
    if not curve or curve[-1].step != step:
        curve.append(evaluate(pipeline, step, train_s, args.train_views))
    target, view, render_s, render_macs = _middle_test_view(pipeline)

    if args.device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this worker's peak RSS
    return MethodResult(
        method=method,
        steps=step,
        train_s=train_s,
        rays_per_batch=rays_per_batch,
        rays_per_s=rays_per_batch * step / train_s,
        macs_per_sample=macs,
        macs_note=note,
        params=sum(p.numel() for p in pipeline.model.parameters()),
        peak_mb=peak_mb,
        curve=curve,
        scene=scene.name,
        view=view,
        target=target,
        render_s=render_s,
        render_macs_per_sample=render_macs,
    )


def _at_steps(result: MethodResult, steps: int) -> EvalPoint | None:
    return next((p for p in result.curve if p.step == steps), None)


def table(results: list[MethodResult], args: BenchmarkArgs) -> str:
    """The markdown comparison table."""
    baseline = next((r for r in results if r.method == "nerfacto"), None)
    head = (
        f"| method | PSNR @ {args.budget_s:.0f} s | SSIM @ {args.budget_s:.0f} s | steps in budget "
        f"| PSNR @ {args.equal_steps} steps | SSIM @ {args.equal_steps} steps "
        f"| train-view PSNR @ {args.equal_steps} steps | train rays/s | MACs/sample | render s/image "
        "| params | peak MB |"
    )
    lines = [head, "|---|" + "---:|" * 11]
    for r in results:
        final, equal = r.curve[-1], _at_steps(r, args.equal_steps)
        speed = f"{r.rays_per_s:,.0f}"
        if baseline is not None and r is not baseline:
            speed += f" ({r.rays_per_s / baseline.rays_per_s:.1f}x)"
        macs = f"{r.macs_per_sample:,d}" + ("*" if r.macs_note else "")
        if r.render_macs_per_sample is not None:
            macs += f" ({r.render_macs_per_sample:,.0f} shared, one image"
            if final.shared_macs is not None:
                macs += f"; {final.shared_macs:,.0f} over the test set"
            macs += ")"
        at_equal = ["-"] * 3
        if equal is not None:
            fitted = "-" if equal.train_psnr is None else f"{equal.train_psnr:.2f}"
            at_equal = [f"{equal.psnr:.2f}", f"{equal.ssim:.3f}", fitted]
        cells = [r.method, f"{final.psnr:.2f}", f"{final.ssim:.3f}", str(r.steps), *at_equal, speed, macs]
        cells.append(f"{r.render_s:.2f}")
        lines.append("| " + " | ".join(cells + [f"{r.params:,d}", f"{r.peak_mb:,.0f}"]) + " |")
    notes = {r.macs_note for r in results if r.macs_note}
    return "\n".join(lines + [f"\n\\* {note}" for note in sorted(notes)])


def plot(results: list[MethodResult], path: Path, title: str) -> None:
    """PSNR against training time and against iteration, one row of two panels per scene."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = list(dict.fromkeys(r.scene for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(scenes), 2, figsize=(11, 4 * len(scenes)), squeeze=False)
    for (by_time, by_step), scene in zip(axes, scenes, strict=True):
        for r in (r for r in results if r.scene == scene):
            color = colors[r.method]
            for ax, x in ((by_time, [p.train_s for p in r.curve]), (by_step, [p.step for p in r.curve])):
                ax.plot(x, [p.psnr for p in r.curve], marker="o", color=color, label=r.method)
            fitted = [p for p in r.curve if p.train_psnr is not None]
            if fitted:
                by_step.plot(
                    [p.step for p in fitted],
                    [p.train_psnr for p in fitted],
                    "--",
                    marker="x",
                    color=color,
                    label=f"{r.method} (train views)",
                )
        by_time.set_xlabel("training time (s, evaluation excluded)")
        by_step.set_xlabel("iteration")
        for ax in (by_time, by_step):
            ax.set_xscale("log")
            ax.set_ylabel("PSNR (dB)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        by_time.set_title(f"{scene}: test views")
        by_step.set_title(f"{scene}: test views (solid), training views (dashed)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    install_excepthook()
    args = tyro.cli(BenchmarkArgs)
    from nerfstudio.configs.method_configs import all_methods

    unknown = [m for m in args.methods if m not in all_methods]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from: {', '.join(sorted(all_methods))}")
    check_qualifiers(args.methods, args.set)
    if args.scenes:
        scenes = list(args.scenes)
    else:
        from nerf_loe.demo import default_scene

        scenes = [default_scene(Path("data"), args.width, args.height)]
    results: list[MethodResult] = []
    for scene in scenes:
        for method in args.methods:
            stored = run_store(args, scene, method)
            result = load_run(stored, args, scene, method)
            if result is None:  # one fresh process each: own memory peak, no shared state
                result = in_fresh_process(run_method, method, scene, args)
                save_run(stored, args, scene, method, result)
            else:
                print(f"{scene.name} {method}: reusing the stored run {stored}", flush=True)
            results.append(result)
            final = result.curve[-1]
            print(f"{scene.name} {method}: {final.psnr:.2f} dB after {result.steps} steps", flush=True)
            write_report(results, args, scenes)


def _settings(args: BenchmarkArgs, scene: Path, method: str) -> dict:
    """What a run's result depends on: every setting but the lists of scenes and methods and the
    output paths, with only the ``--set`` items that reach ``method``, the scene's folder (so
    overriding one method reruns that method alone), and the method's registered config (so a run
    stored before a default changed is not passed off as the new default's)."""
    fixed = {k: v for k, v in asdict(args).items() if k not in ("scenes", "methods", "out", "runs_dir")}
    fixed["set"] = overrides_for(method, args.set)
    fixed["method_config"] = method_config_key(method)
    return json.loads(json.dumps({**fixed, "scene": str(scene.resolve())}, default=str))


def method_config_key(method: str) -> str:
    """The method's registered config as text that is the same in every process: a stored run
    keyed on it is not reused once a default of the method changes. Memory addresses (of the
    collate function, say) are dropped, since they differ from process to process."""
    from nerfstudio.configs.method_configs import all_methods

    return re.sub(r" at 0x[0-9a-f]+", "", repr(all_methods.get(method)))


def run_store(args: BenchmarkArgs, scene: Path, method: str) -> Path:
    return args.runs_dir / f"{scene.name}__{method}.pkl"


def save_run(path: Path, args: BenchmarkArgs, scene: Path, method: str, result: MethodResult) -> None:
    write_atomically(path, pickle.dumps({"settings": _settings(args, scene, method), "result": result}))


def load_run(path: Path, args: BenchmarkArgs, scene: Path, method: str) -> MethodResult | None:
    """The stored result of this run, or None when there is none or it was made with other settings."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        stored = pickle.load(f)
    return stored["result"] if stored["settings"] == _settings(args, scene, method) else None


def write_report(results: list[MethodResult], args: BenchmarkArgs, scenes: list[Path]) -> str:
    """Write ``<out>.md`` (summary and per-scene tables, with the command), ``<out>.json``,
    ``<out>.png`` (PSNR curves) and ``<out>_views.png`` (one test view per scene and method)."""
    limit = f"{args.budget_s:.0f} s"
    if args.max_steps != BenchmarkArgs.max_steps:
        limit += f" or {args.max_steps} steps"
    names = ", ".join(scene.name for scene in scenes)
    title = f"{names}, {args.device}, {limit} per method"
    sections = ["\n".join(report_head(f"Method benchmark: {title}", PROGRAM))]
    if len(scenes) > 1:
        sections += ["## Over scenes", summary(results, args)]
    for scene in scenes:
        header = f"## {scene.name}" if len(scenes) > 1 else ""
        sections += [header, table([r for r in results if r.scene == scene.name], args)]
    methods = ", ".join(dict.fromkeys(r.method for r in results))
    sections += [
        f"![PSNR vs time]({args.out.name}.png)",
        f"Middle test view per scene; columns: ground truth, {methods}.",
        f"![test views]({args.out.name}_views.png)",
    ]
    text = "\n\n".join(part for part in sections if part) + "\n"
    images = ("view", "target")  # in the PNG grid, not in the JSON
    payload = {
        "command": invocation(PROGRAM),
        "scenes": [str(scene) for scene in scenes],
        "results": [{k: v for k, v in asdict(r).items() if k not in images} for r in results],
    }
    save_report(args.out, text, payload)
    plot(results, beside(args.out, ".png"), title)
    view_grid(results, args.out.parent / f"{args.out.name}_views.png")
    print(text)
    return text


def _median_and_worst(values: dict[str, float]) -> str:
    worst = min(values, key=values.get)
    return f"{statistics.median(values.values()):.2f} | {values[worst]:.2f} ({worst})"


def summary(results: list[MethodResult], args: BenchmarkArgs) -> str:
    """Per method over scenes: median and worst test PSNR / SSIM at the budget and at equal steps;
    then per scene, the first method's PSNR margin over each other method (at the budget / at equal
    steps)."""
    methods = list(dict.fromkeys(r.method for r in results))
    scenes = list(dict.fromkeys(r.scene for r in results))
    by = {(r.scene, r.method): r for r in results}
    lines = [
        f"| method | PSNR @ {args.budget_s:.0f} s median | worst | SSIM median | worst "
        f"| PSNR @ {args.equal_steps} steps median | worst |",
        "|---|" + "---:|" * 6,
    ]
    for method in methods:
        final = {s: by[s, method].curve[-1] for s in scenes if (s, method) in by}
        equal = {s: _at_steps(by[s, method], args.equal_steps) for s in final}
        equal_psnr = {s: p.psnr for s, p in equal.items() if p is not None}
        cells = [
            _median_and_worst({s: p.psnr for s, p in final.items()}),
            _median_and_worst({s: p.ssim for s, p in final.items()}),
            _median_and_worst(equal_psnr) if len(equal_psnr) == len(final) else "- | -",
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    first, others = methods[0], methods[1:]
    if others:
        lines += [
            "",
            f"{first} minus each method, test PSNR (dB) at {args.budget_s:.0f} s"
            f" / at {args.equal_steps} steps:",
            "",
            "| scene | " + " | ".join(others) + " |",
            "|---|" + "---:|" * len(others),
        ]
        for s in scenes:
            cells = []
            for other in others:
                a, b = by.get((s, first)), by.get((s, other))
                if a is None or b is None:
                    cells.append("-")
                    continue
                at_equal = [_at_steps(r, args.equal_steps) for r in (a, b)]
                equal_text = "-" if None in at_equal else f"{at_equal[0].psnr - at_equal[1].psnr:+.2f}"
                cells.append(f"{a.curve[-1].psnr - b.curve[-1].psnr:+.2f} / {equal_text}")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def view_grid(results: list[MethodResult], path: Path) -> None:
    """One row per scene: the test view's ground truth, then each method's render."""
    from PIL import Image

    scenes = list(dict.fromkeys(r.scene for r in results))
    rows = []
    for s in scenes:
        row = [r for r in results if r.scene == s and r.view is not None]
        if not row:
            continue
        tiles = [row[0].target] + [r.view for r in row]
        height = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0))) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows])
    Image.fromarray(grid).save(path)


if __name__ == "__main__":
    main()
