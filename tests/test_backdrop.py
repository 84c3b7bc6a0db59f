"""Plain-backdrop detection on the borders of training images."""

import torch

from nerf_loe.data.backdrop import border_pixels, plain_backdrop


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
    assert plain_backdrop(images.__getitem__, 5) == (1.0, 1.0, 1.0)


def test_a_grey_backdrop_with_noise_and_one_object_at_the_edge_is_found():
    torch.manual_seed(0)
    images = [object_on((0.5, 0.5, 0.5)) + torch.randn(16, 16, 3) * 0.01 for _ in range(4)]
    images[0][0:6, 0:6] = 0.0  # an object crossing the border of one view: 11 of 240 pixels
    colour = plain_backdrop(images.__getitem__, 4)
    assert colour is not None and max(abs(c - 0.5) for c in colour) < 0.01


def test_an_opaque_scene_has_no_backdrop():
    torch.manual_seed(0)
    rows = torch.linspace(0, 1, 16)[:, None, None]  # sky-to-floor gradient with texture
    images = [(rows + torch.rand(16, 16, 3) * 0.3).clamp(0, 1) for _ in range(3)]
    assert plain_backdrop(images.__getitem__, 3) is None


def test_rgba_images_have_no_backdrop_of_their_own():
    images = [torch.cat([object_on((1.0, 1.0, 1.0)), torch.ones(16, 16, 1)], dim=-1)]
    assert plain_backdrop(images.__getitem__, 1) is None
