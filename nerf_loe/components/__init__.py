"""Reusable building blocks of fields: routing, tilings, tiled linear layers, normalisation, MLPs."""
