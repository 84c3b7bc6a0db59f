"""The worked examples in the rendering functions' docstrings are run and must print what they say."""

import doctest
import math

import pytest
import torch

from nerf_loe.benchmarks import methods, timing
from nerf_loe.components import asmr, constants, dictionary, frequency_mask, gating
from nerf_loe.data import teaching_selection
from nerf_loe.inspection import grid_view, mesh, orbit, region_map
from nerf_loe.rendering import marching, volume_rendering
from nerf_loe.training import teaching_schedule


@pytest.mark.parametrize(
    "module",
    [
        marching,
        volume_rendering,
        timing,
        methods,
        asmr,
        constants,
        teaching_schedule,
        teaching_selection,
        region_map,
        grid_view,
        mesh,
        orbit,
        frequency_mask,
        gating,
        dictionary,
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"torch": torch, "math": math}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
