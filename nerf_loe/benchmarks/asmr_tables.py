"""ASMR's inference tables: complete tables or caches of the touched cells, which wins where.

Run: ``python -m nerf_loe.benchmarks.asmr_tables --scene data/lamppost-100x75 --steps 1500
--dense-cells 32768 4096 0``. Trains asmr-nerf ``steps`` iterations, then evaluates the test set
once per ``dense_cells`` value (levels with at most that many cells get a complete table, finer
ones a cache of the cells the renders touch), ``repeats`` rounds in turn: test PSNR (the same for
every value: sharing is exact), the field's MACs executed per sample over the test set, table
memory at the end, and the evaluation's seconds (median over the rounds). Writes ``<out>.md``
headed by the command.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import tyro

from nerf_loe.benchmarks import report_head, save_report
from nerf_loe.benchmarks.methods import RESULTS, BenchmarkArgs, evaluate, setup_trainer, train_step
from nerf_loe.errors import ConfigError, install_excepthook


@dataclass
class TablesArgs:
    scene: Path
    """Dataset folder."""
    steps: int = 1500
    """Training iterations before the evaluations."""
    dense_cells: tuple[int, ...] = (1 << 15, 1 << 12, 0)
    """The values of --pipeline.model.dense-cells to compare."""
    repeats: int = 2
    """Rounds over the values (timings: median over the rounds)."""
    dataparser: Literal["blender", "nerfstudio"] = "nerfstudio"
    set: tuple[str, ...] = ()
    """Model config overrides, ``key=value`` (see ``nerf_loe.benchmarks.methods --set``)."""
    seed: int = 42
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: Path = field(default_factory=lambda: RESULTS / "asmr_tables")

    def __post_init__(self) -> None:
        if self.steps < 1 or self.repeats < 1 or not self.dense_cells or min(self.dense_cells) < 0:
            raise ConfigError("--steps and --repeats must be >= 1, --dense-cells one or more values >= 0")


def compare_tables(args: TablesArgs) -> list[dict[str, float]]:
    """One row per ``dense_cells`` value: its test PSNR, MACs per sample, table MB and seconds."""
    bench = BenchmarkArgs(dataparser=args.dataparser, set=args.set, seed=args.seed, device=args.device)
    with tempfile.TemporaryDirectory(prefix="nerf_loe_tables_") as tmp:
        trainer = setup_trainer("asmr-nerf", args.scene, bench, Path(tmp))
        for step in range(args.steps):
            train_step(trainer, step)
        trunk = trainer.pipeline.model.field.trunk
        rows = {d: {"dense_cells": d, "seconds": []} for d in args.dense_cells}
        for _ in range(args.repeats):
            for dense, row in rows.items():
                trunk.dense_cells = dense  # evaluate() starts from empty tables
                start = time.perf_counter()
                point = evaluate(trainer.pipeline, args.steps, 0.0, train_views=0)
                row["seconds"].append(time.perf_counter() - start)
                row.update(psnr=point.psnr, macs=point.shared_macs, table_mb=trunk.table_bytes() / 2**20)
    return [{**row, "seconds": statistics.median(row["seconds"])} for row in rows.values()]


def main() -> None:
    install_excepthook()
    args = tyro.cli(TablesArgs)
    rows = compare_tables(args)
    lines = [
        *report_head(
            f"ASMR tables: asmr-nerf on {args.scene.name} after {args.steps} steps ({args.device})",
            "python -m nerf_loe.benchmarks.asmr_tables",
        ),
        "",
        "| dense cells | test PSNR | MACs/sample over the test set | tables MB | test-set seconds |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['dense_cells']} | {r['psnr']:.3f} | {r['macs']:,.0f} | {r['table_mb']:.1f} "
            f"| {r['seconds']:.2f} |"
            for r in rows
        ),
        "",
    ]
    save_report(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
