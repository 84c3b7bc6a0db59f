"""Adam through torch's fused kernel: one pass over each parameter a step.

nerfstudio's ``AdamOptimizerConfig`` builds ``torch.optim.Adam`` with torch's default
implementation, which on the CPU updates each parameter with a chain of element-wise operations,
each a pass over the parameter and its two moments: costly on loe-nerf's 3.3M parameters (its
banks). The fused kernel computes the same update in one pass
(``benchmarks/results/optimizer_cpu.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """nerfstudio's Adam config with torch's fused implementation chosen by default."""

    fused: bool | None = True
    """torch's fused Adam (CPU and CUDA; the same update as the default implementation, to float
    rounding); False or None: torch's default implementation."""

    def setup(self, params) -> torch.optim.Optimizer:
        """torch's Adam, which keeps the implementation chosen here when a checkpoint's state is
        loaded (torch would take the saved one: a run resumed from a checkpoint of the default
        implementation would silently stay on it)."""
        optimizer = super().setup(params)

        def keep_implementation(_: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
            for group in state["param_groups"]:
                group["fused"] = self.fused
            return state

        optimizer.register_load_state_dict_pre_hook(keep_implementation)
        return optimizer
