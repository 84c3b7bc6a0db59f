"""Resuming with ``--load-dir``, which nerfstudio 1.1.5 does by parsing the step out of every file
name in the folder: a folder without checkpoints (the run's folder rather than its
``nerfstudio_models``, a mistyped path) ended in ``IndexError`` or ``ValueError`` tracebacks after
the whole pipeline was built. The fix finds the step from the ``step-*.ckpt`` names alone, before
nerfstudio's loader runs, and says what to pass where there is none; loading is nerfstudio's own.
"""

from __future__ import annotations

import re
from pathlib import Path

from nerf_loe.errors import ConfigError

CHECKPOINT = re.compile(r"step-(\d{9})\.ckpt")
"""nerfstudio's checkpoint file names (``step-000000999.ckpt``: the step in nine digits, the name
nerfstudio's loader then opens)."""


def _steps(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := CHECKPOINT.fullmatch(p.name)))


def checkpoint_step(load_dir: Path, load_step: int | None) -> int:
    """The step to resume from in ``load_dir``: ``load_step`` if that checkpoint is there, else
    (None) the latest; a ConfigError saying what to pass where the folder has no checkpoint."""
    if not load_dir.is_dir():
        raise ConfigError(f"--load-dir {load_dir} does not exist: give a run's nerfstudio_models folder")
    steps = _steps(load_dir)
    if not steps:
        inner = load_dir / "nerfstudio_models"
        hint = (
            f"pass --load-dir {inner}"
            if inner.is_dir() and _steps(inner)
            else "give a run's nerfstudio_models folder"
        )
        raise ConfigError(f"--load-dir {load_dir} holds no step-*.ckpt checkpoint: {hint}")
    if load_step is None:
        return steps[-1]
    if load_step not in steps:
        raise ConfigError(f"--load-step {load_step}: {load_dir} holds the steps {', '.join(map(str, steps))}")
    return load_step


def patch_nerfstudio_resume() -> None:
    """Check ``--load-dir`` (and ``--load-step``) before nerfstudio's trainer loads (idempotent)."""
    from nerfstudio.engine.trainer import Trainer

    original = Trainer._load_checkpoint
    if getattr(original, "__nerf_loe_patched__", False):
        return

    def _load_checkpoint(self: Trainer) -> None:
        if self.config.load_dir is not None:
            self.config.load_step = checkpoint_step(Path(self.config.load_dir), self.config.load_step)
        original(self)

    _load_checkpoint.__nerf_loe_patched__ = True  # type: ignore[attr-defined]
    _load_checkpoint.__doc__ = original.__doc__
    Trainer._load_checkpoint = _load_checkpoint
