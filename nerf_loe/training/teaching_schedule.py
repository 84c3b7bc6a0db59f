"""Implicit Neural Teaching's schedules (Zhang et al., ICML 2024): how large a share of the data
to train on at a step, and at which steps to choose it again.

The *ratio* is the selected share, rising from ``start`` toward 1 as training proceeds:

- ``constant``: ``start``;
- ``linear``: ``start + (t / T) (1 - start)``;
- ``step``: ``stages`` equal stages, ``start + floor(t / (T / stages)) (1 - start) / stages``: 0.2,
  0.28, ..., 0.92 for the published ``start = 0.2``, ``stages = 10`` (the last stage stays below 1);
- ``cosine``: ``1 - (1 - start) (1 + cos(pi t / T)) / 2``.

The *strategy* says when to select again, the selection being reused in between:

- ``dense``: every step;
- ``incremental``: every step for the first ``startup`` share of the iterations, then the rest in
  ``stages`` equal stages selecting every ``base``, ``2 base``, ... steps, with
  ``base = max_interval // stages`` (10, 20, 30, 40 and 50 steps for the published defaults); a
  step is a selection step when ``t`` is a multiple of its stage's interval.

Example:
    >>> [round(teaching_ratio("step", t, 1000), 2) for t in (0, 99, 100, 500, 999)]
    [0.2, 0.2, 0.28, 0.6, 0.92]
    >>> [t for t in range(240, 420) if reselects("incremental", t, 1000)][9:]
    [249, 250, 260, 270, 280, 290, 300, 310, 320, 330, 340, 350, 360, 370, 380, 390, 400]
"""

from __future__ import annotations

import math
from typing import Literal

from nerf_loe.errors import ConfigError

RatioSchedule = Literal["constant", "linear", "step", "cosine"]
Strategy = Literal["dense", "incremental"]


def teaching_ratio(
    schedule: RatioSchedule, step: int, total: int, start: float = 0.2, stages: int = 10
) -> float:
    """Share of the data selected at ``step`` (0-based) of ``total`` iterations."""
    if not 0.0 < start <= 1.0:
        raise ConfigError(f"teaching ratio start {start}: give a share in (0, 1]")
    if total < 1 or stages < 1:
        raise ConfigError(f"teaching schedule needs total >= 1 and stages >= 1 (got {total}, {stages})")
    progress = min(max(step, 0), total) / total
    if schedule == "constant":
        return start
    if schedule == "linear":
        return start + progress * (1.0 - start)
    if schedule == "step":
        stage = math.floor(min(max(step, 0), total) / (total / stages))
        return min(start + stage * (1.0 - start) / stages, 1.0)
    if schedule == "cosine":
        return 1.0 - 0.5 * (1.0 - start) * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"teaching ratio schedule {schedule!r}: choose constant, linear, step or cosine")


def selection_count(ratio: float, n: int) -> int:
    """How many of ``n`` items a ratio selects: all of them at 1, else ``floor(ratio n)``, at least 1."""
    if math.isclose(ratio, 1.0):
        return n
    return max(1, min(n, int(ratio * n)))


def reselects(
    strategy: Strategy,
    step: int,
    total: int,
    startup: float = 0.25,
    max_interval: int = 50,
    stages: int = 5,
) -> bool:
    """Whether ``step`` (0-based) chooses a new selection (else the previous one is reused)."""
    if strategy == "dense":
        return True
    if strategy != "incremental":
        raise ConfigError(f"teaching strategy {strategy!r}: choose dense or incremental")
    dense_steps = int(total * startup)
    stage_length = max((total - dense_steps) // stages, 1)
    if step < dense_steps or step < stage_length:
        return True
    base = max(max_interval // stages, 1)
    interval = base * (max(1, step - dense_steps) // stage_length + 1)
    return step % interval == 0
