"""On-demand benchmarks (scripts that print figures; results live in nerf_loe/benchmarks/results)."""

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def beside(stem: Path, suffix: str) -> Path:
    """``stem`` with ``suffix`` appended (``Path.with_suffix`` would cut a stem like ``scale_0.1``)."""
    return stem.parent / (stem.name + suffix)


def in_fresh_process(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a newly spawned Python process: each run gets its own memory peak
    and no state (seeds, caches, compiled kernels) left by an earlier one."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
