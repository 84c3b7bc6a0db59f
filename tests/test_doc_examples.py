"""The worked examples in the rendering functions' docstrings are run and must print what they say."""

import doctest
import math

import pytest
import torch

from nerf_loe.benchmarks import timing
from nerf_loe.rendering import marching, volume_rendering


@pytest.mark.parametrize("module", [marching, volume_rendering, timing])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"torch": torch, "math": math}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
