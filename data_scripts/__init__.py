"""Thin command-line front ends over nerf_loe.data (installed as nerf_loe.data_scripts)."""
