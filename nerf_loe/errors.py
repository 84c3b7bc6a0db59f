"""User-facing errors: raised for bad input, printed as one line instead of a traceback.

Anything the user can fix (a config value, a data file) raises a subclass of
:class:`NerfLoeError` with a message that names the option or file and says what to do.
:func:`install_excepthook` makes the CLIs print such errors as ``error: <message>``.
"""

from __future__ import annotations

import sys
from types import TracebackType


class NerfLoeError(Exception):
    """Base class of errors caused by user input; printed as a single line by the CLIs."""


class ConfigError(NerfLoeError, ValueError):
    """A configuration option has a value this package cannot use."""


class DatasetError(NerfLoeError, ValueError):
    """A dataset on disk is missing, incomplete or unreadable."""


class RendererError(NerfLoeError, RuntimeError):
    """An external renderer (POV-Ray, open3d) is missing or failed on its input."""


_previous_hook = sys.excepthook


def _one_line_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if isinstance(exc, NerfLoeError):
        print(f"error: {exc}", file=sys.stderr)
        return
    _previous_hook(exc_type, exc, tb)


def install_excepthook() -> None:
    """Print :class:`NerfLoeError` as one line (other exceptions keep their traceback)."""
    sys.excepthook = _one_line_hook
