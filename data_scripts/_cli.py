"""Shared CLI plumbing: one-line errors for bad input."""

from nerf_loe.errors import install_excepthook


def setup() -> None:
    install_excepthook()
