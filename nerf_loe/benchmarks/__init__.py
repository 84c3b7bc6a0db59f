"""On-demand benchmarks (scripts that print figures; results live in nerf_loe/benchmarks/results)."""

from pathlib import Path


def beside(stem: Path, suffix: str) -> Path:
    """``stem`` with ``suffix`` appended (``Path.with_suffix`` would cut a stem like ``scale_0.1``)."""
    return stem.parent / (stem.name + suffix)
