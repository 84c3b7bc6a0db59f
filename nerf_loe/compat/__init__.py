"""Fixes nerfstudio 1.1.5 needs to run with torch >= 2.6, without network access, on several CPU
processes and at speed on the CPU (the allocator), and to say what to pass where a resume folder
holds no checkpoint.

:func:`install` is called when nerfstudio loads this plugin's method configs, so the fixes
apply to every ``ns-*`` command (including nerfstudio's own methods) once the plugin is installed.
It is idempotent and changes nothing but what each module documents.
"""

from __future__ import annotations

from nerf_loe.compat.allocator import tune_cpu_allocator
from nerf_loe.compat.checkpoints import allow_nerfstudio_checkpoint_globals
from nerf_loe.compat.distributed import patch_nerfstudio_distributed
from nerf_loe.compat.lpips import patch_nerfstudio_lpips
from nerf_loe.compat.resume import patch_nerfstudio_resume
from nerf_loe.compat.spiral import patch_nerfstudio_spiral
from nerf_loe.errors import install_excepthook


def install() -> None:
    """Apply the allocator, checkpoint, LPIPS, multi-device, spiral, resume and error-printing fixes
    (safe to call repeatedly)."""
    tune_cpu_allocator()
    allow_nerfstudio_checkpoint_globals()
    patch_nerfstudio_lpips()
    patch_nerfstudio_distributed()
    patch_nerfstudio_spiral()
    patch_nerfstudio_resume()
    install_excepthook()
