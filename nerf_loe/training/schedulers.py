"""Learning-rate schedule whose state is checkpoint-safe under ``torch.load(weights_only=True)``.

Same schedule as nerfstudio's ExponentialDecayScheduler (linear warm-up, then log-linear decay
from ``lr_init`` to ``lr_final``), but computed in Python floats, so no numpy scalar ends up in
the optimizer or scheduler state that nerfstudio saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer, lr_scheduler

from nerf_loe.errors import ConfigError


@dataclass
class FloatExponentialDecaySchedulerConfig(SchedulerConfig):
    """Warm-up then exponential decay; see :class:`FloatExponentialDecayScheduler`."""

    _target: type = field(default_factory=lambda: FloatExponentialDecayScheduler)
    lr_final: float | None = None
    """Learning rate at ``max_steps``; None keeps ``lr_init`` (or follows ``lr_final_ratio``)."""
    lr_final_ratio: float | None = None
    """Learning rate at ``max_steps`` as a fraction of the optimizer's rate; overrides ``lr_final``,
    so a rate changed on the command line (``--optimizers.fields.optimizer.lr``) decays by the same
    factor instead of towards a fixed end rate."""
    lr_pre_warmup: float = 1e-8
    """Learning rate at step 0 of the warm-up."""
    warmup_steps: int = 0
    """Steps of linear warm-up."""
    max_steps: int = 100000
    """Step at which ``lr_final`` is reached."""


class FloatExponentialDecayScheduler(Scheduler):
    """Exponential decay with warm-up; the lambda returns Python floats only."""

    config: FloatExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        cfg = self.config
        if cfg.lr_final_ratio is not None:
            if cfg.lr_final_ratio <= 0:
                raise ConfigError(f"scheduler lr_final_ratio must be > 0, got {cfg.lr_final_ratio}")
            lr_final = lr_init * cfg.lr_final_ratio
        else:
            lr_final = lr_init if cfg.lr_final is None else cfg.lr_final

        def factor(step: int) -> float:
            if step < cfg.warmup_steps:
                lr = cfg.lr_pre_warmup + (lr_init - cfg.lr_pre_warmup) * step / cfg.warmup_steps
            else:
                span = max(cfg.max_steps - cfg.warmup_steps, 1)
                progress = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
                lr = math.exp(math.log(lr_init) * (1 - progress) + math.log(lr_final) * progress)
            return float(lr / lr_init)

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
