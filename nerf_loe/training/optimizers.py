"""Adam through torch's fused kernel: one pass over each parameter a step.

nerfstudio's ``AdamOptimizerConfig`` builds ``torch.optim.Adam`` with torch's default
implementation, which on the CPU updates each parameter with a chain of element-wise operations,
each a pass over the parameter and its two moments: costly on loe-nerf's 3.3M parameters (its
banks). The fused kernel computes the same update in one pass
(``benchmarks/results/optimizer_cpu.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfstudio.engine.optimizers import AdamOptimizerConfig


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """nerfstudio's Adam config with torch's fused implementation chosen by default."""

    fused: bool | None = True
    """torch's fused Adam (CPU and CUDA; the same update as the default implementation, to float
    rounding); False or None: torch's default implementation."""
