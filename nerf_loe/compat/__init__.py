"""Fixes nerfstudio 1.1.5 needs to run with torch >= 2.6 and without network access.

:func:`install` is called when nerfstudio loads this plugin's method configs, so the fixes
apply to every ``ns-*`` command (including nerfstudio's own methods) once the plugin is installed.
It is idempotent and changes nothing but the two documented points below.
"""

from __future__ import annotations

from nerf_loe.compat.checkpoints import allow_nerfstudio_checkpoint_globals
from nerf_loe.compat.lpips import patch_nerfstudio_lpips
from nerf_loe.errors import install_excepthook


def install() -> None:
    """Apply the checkpoint, LPIPS and error-printing fixes (safe to call repeatedly)."""
    allow_nerfstudio_checkpoint_globals()
    patch_nerfstudio_lpips()
    install_excepthook()
