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

_scalar = np.float64(0).__reduce__()[0]  # numpy's scalar rebuilder, not through numpy 2's deprecated np.core

#: The globals a pickled numpy float64 scalar refers to; the rebuilder under both of its names
#: (numpy < 2 pickles it as ``numpy.core.multiarray.scalar``, numpy 2 as ``numpy._core...``), so
#: a checkpoint loads whichever numpy wrote it.
NUMPY_SCALAR_GLOBALS: list = [
    (_scalar, "numpy.core.multiarray.scalar"),
    (_scalar, "numpy._core.multiarray.scalar"),
    np.dtype,
    type(np.dtype(np.float64)),
]


def allow_nerfstudio_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read numpy scalar learning rates."""
    torch.serialization.add_safe_globals(NUMPY_SCALAR_GLOBALS)
