"""Loading nerfstudio 1.1.5 checkpoints with torch >= 2.6 (``weights_only=True`` by default).

nerfstudio's ExponentialDecayScheduler computes learning rates with numpy, so checkpoints of its
built-in methods hold ``numpy.float64`` values in optimizer ``param_groups[*].lr`` and scheduler
``_last_lr``; torch then refuses them ("Unsupported global: numpy.core.multiarray.scalar",
nerfstudio issue #3683). We allow exactly the globals such a value needs and nothing else.
Checkpoints of this package's methods need none of this: our schedulers return Python floats.
"""

from __future__ import annotations

import numpy as np
import torch

#: The globals a pickled numpy float64 scalar refers to.
NUMPY_SCALAR_GLOBALS: list = [np.core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]


def allow_nerfstudio_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read numpy scalar learning rates."""
    torch.serialization.add_safe_globals(NUMPY_SCALAR_GLOBALS)
