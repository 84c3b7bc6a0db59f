"""nerf_loe: Levels-of-Experts and related efficient neural fields for nerfstudio."""

__version__ = "0.1.0"
