"""Plain-backdrop detection on the borders of training images."""

import pytest
import torch

from nerf_loe.data.backdrop import (
    alpha_rule,
    border_pixels,
    over,
    plain_backdrop,
    sampled_borders,
    transparent_borders,
)


def object_on(colour: tuple[float, float, float], size: int = 16) -> torch.Tensor:
    image = torch.tensor(colour).expand(size, size, 3).clone()
    image[4:12, 4:12] = torch.tensor([0.8, 0.1, 0.2])  # the object, away from the borders
    return image


def test_border_pixels_are_the_outermost_rows_and_columns_once():
    image = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4, 1)
    assert sorted(border_pixels(image)[:, 0].int().tolist()) == [
        0,
        1,
        2,
        3,
        4,
        7,
        8,
        11,
        12,
        15,
        16,
        17,
        18,
        19,
    ]


def test_objects_on_white_have_a_white_backdrop():
    images = [object_on((1.0, 1.0, 1.0)) for _ in range(5)]
    assert plain_backdrop(sampled_borders(images.__getitem__, 5)) == (1.0, 1.0, 1.0)


def test_a_grey_backdrop_with_noise_and_one_object_at_the_edge_is_found():
    torch.manual_seed(0)
    images = [object_on((0.5, 0.5, 0.5)) + torch.randn(16, 16, 3) * 0.01 for _ in range(4)]
    images[0][0:6, 0:6] = 0.0  # an object crossing the border of one view: 11 of 240 pixels
    colour = plain_backdrop(sampled_borders(images.__getitem__, 4))
    assert colour is not None and max(abs(c - 0.5) for c in colour) < 0.01


def test_an_opaque_scene_has_no_backdrop():
    torch.manual_seed(0)
    rows = torch.linspace(0, 1, 16)[:, None, None]  # sky-to-floor gradient with texture
    images = [(rows + torch.rand(16, 16, 3) * 0.3).clamp(0, 1) for _ in range(3)]
    assert plain_backdrop(sampled_borders(images.__getitem__, 3)) is None


def test_transparent_borders_have_no_backdrop_of_their_own_and_opaque_rgba_is_rgb():
    subject = torch.zeros(16, 16, 1)
    subject[4:12, 4:12] = 1.0  # alpha: the object only
    cutout = [torch.cat([object_on((1.0, 1.0, 1.0)), subject], dim=-1) for _ in range(3)]
    borders = sampled_borders(cutout.__getitem__, 3)
    assert plain_backdrop(borders) is None and transparent_borders(borders)
    opaque = [torch.cat([object_on((0.2, 0.4, 0.6)), torch.ones(16, 16, 1)], dim=-1) for _ in range(3)]
    borders = sampled_borders(opaque.__getitem__, 3)
    assert not transparent_borders(borders)
    assert plain_backdrop(borders) == pytest.approx((0.2, 0.4, 0.6))


def test_sky_transparent_above_an_opaque_ground_is_neither():
    # POV-Ray's open scenes: the sky renders transparent, the ground to the horizon opaque
    image = torch.rand(16, 16, 4)
    image[:, :, 3] = 1.0
    image[:6, :, 3] = 0.0
    borders = sampled_borders([image].__getitem__, 1)
    assert not transparent_borders(borders) and plain_backdrop(borders) is None


def test_alpha_rule_by_case():
    rgb = torch.rand(40, 3)
    assert alpha_rule(rgb) is None
    cutout = torch.cat([torch.rand(40, 3), torch.zeros(40, 1)], dim=-1)
    assert alpha_rule(cutout) == "subject"
    sky = cutout.clone()
    sky[:30, 3] = 1.0  # a quarter transparent: sky above an opaque ground
    assert alpha_rule(sky) == "flatten"


def test_over_composites_straight_alpha():
    rgba = torch.tensor([[0.2, 0.4, 0.6, 0.25], [1.0, 0.0, 0.5, 1.0], [0.3, 0.3, 0.3, 0.0]])
    colour = torch.tensor([1.0, 1.0, 1.0])
    # by hand: 0.25 * (0.2, 0.4, 0.6) + 0.75 * 1; opaque: the colour itself; transparent: white
    expected = torch.tensor([[0.8, 0.85, 0.9], [1.0, 0.0, 0.5], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(over(rgba, colour.expand(3, 3)), expected)
