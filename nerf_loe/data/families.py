"""Object families for scene collections: chairs, tables, mugs and lamps built from parametric
parts, in canonical pose (upright along +z, centred on the origin, standing on a floor plane
inside [-1, 1]^3), as ShapeNet categories are for category-level NeRFs (pixelNeRF, CodeNeRF).

Each family draws its proportions, part shapes, colours and textures from the scene's random
generator, so every scene of a collection is a different member of one family: what a dictionary
of basis fields (NID) can share. Parts are unit primitives stretched per axis
(:attr:`~nerf_loe.data.procedural.SceneObject.size`).
"""

from __future__ import annotations

import numpy as np

from nerf_loe.data.procedural import TEXTURES, Family, SceneObject
from nerf_loe.errors import ConfigError

UPRIGHT = np.eye(3)
#: a quarter turn about x: the unit torus (a ring in the xy plane) stands in the xz plane
STANDING = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

WOODS = np.array([[0.55, 0.35, 0.2], [0.7, 0.5, 0.3], [0.35, 0.22, 0.12], [0.8, 0.68, 0.5]])


class _Parts:
    """Collects the parts of one object, each with the rng's colour and texture choices."""

    def __init__(self, rng: np.random.Generator, textured: bool) -> None:
        self.rng, self.textured, self.parts = rng, textured, []

    def color(self, palette: np.ndarray | None = None) -> np.ndarray:
        if palette is not None:
            base = palette[self.rng.integers(len(palette))]
            return np.clip(base + self.rng.normal(0, 0.05, 3), 0.05, 0.95)
        return self.rng.uniform(0.15, 0.9, 3)

    def texture(self, chance: float) -> str | None:
        return str(self.rng.choice(TEXTURES)) if self.textured and self.rng.random() < chance else None

    def add(self, shape: str, center, size, color, texture=None, rotation=UPRIGHT) -> None:
        size = np.asarray(size, dtype=float)
        self.parts.append(
            SceneObject(
                shape, np.asarray(center, dtype=float), rotation, float(size.max()), color, texture, size
            )
        )

    def legs(
        self, shape: str, half_x: float, half_y: float, thickness: float, top: float, floor: float, color
    ):
        height = top - floor
        for sx in (-1, 1):
            for sy in (-1, 1):
                center = (sx * (half_x - thickness / 2), sy * (half_y - thickness / 2), floor + height / 2)
                self.add(shape, center, (thickness, thickness, height), color)


def _chair(p: _Parts) -> None:
    floor = -0.8
    width, depth = p.rng.uniform(0.7, 1.0), p.rng.uniform(0.7, 1.0)
    seat_top, seat = p.rng.uniform(0.65, 0.85), p.rng.uniform(0.06, 0.12)
    frame, cushion = p.color(WOODS), p.color()
    leg = p.rng.uniform(0.06, 0.11)
    p.legs(
        str(p.rng.choice(["box", "cylinder"])),
        width / 2,
        depth / 2,
        leg,
        floor + seat_top - seat,
        floor,
        frame,
    )
    p.add("box", (0, 0, floor + seat_top - seat / 2), (width, depth, seat), cushion, p.texture(0.3))
    back_height, back = p.rng.uniform(0.5, 0.85), p.rng.uniform(0.05, 0.1)
    p.add(
        "box",
        (0, depth / 2 - back / 2, floor + seat_top + back_height / 2),
        (width, back, back_height),
        cushion,
    )
    if p.rng.random() < 0.35:  # armrests
        arm = p.rng.uniform(0.18, 0.28)
        for sx in (-1, 1):
            p.add("box", (sx * (width / 2 - 0.04), 0, floor + seat_top + arm), (0.08, depth, 0.06), frame)


def _table(p: _Parts) -> None:
    floor = -0.8
    width, depth = p.rng.uniform(1.1, 1.7), p.rng.uniform(0.7, 1.2)
    top_z, top = p.rng.uniform(0.7, 1.05), p.rng.uniform(0.05, 0.12)
    wood = p.color(WOODS)
    p.add("box", (0, 0, floor + top_z - top / 2), (width, depth, top), wood, p.texture(0.3))
    if p.rng.random() < 0.25:  # a pedestal
        column, foot = p.rng.uniform(0.08, 0.16), p.rng.uniform(0.35, 0.55)
        height = top_z - top
        p.add("cylinder", (0, 0, floor + height / 2), (column, column, height), wood)
        p.add("cylinder", (0, 0, floor + 0.03), (foot, foot, 0.06), wood)
    else:
        inset = p.rng.uniform(0.0, 0.15)
        leg = p.rng.uniform(0.06, 0.14)
        shape = str(p.rng.choice(["box", "cylinder"]))
        p.legs(shape, width / 2 - inset, depth / 2 - inset, leg, floor + top_z - top, floor, wood)


def _mug(p: _Parts) -> None:
    floor = -0.5
    radius, height = p.rng.uniform(0.3, 0.45), p.rng.uniform(0.55, 0.95)
    ceramic = p.color()
    p.add("cylinder", (0, 0, floor + height / 2), (2 * radius, 2 * radius, height), ceramic, p.texture(0.4))
    ring = p.rng.uniform(0.45, 0.65) * height
    p.add(
        "torus",
        (radius + 0.2 * ring, 0, floor + height / 2),
        (ring, ring, 0.5 * ring),
        ceramic,
        rotation=STANDING,
    )


def _lamp(p: _Parts) -> None:
    floor = -0.9
    base_radius, base = p.rng.uniform(0.22, 0.4), p.rng.uniform(0.05, 0.1)
    pole, pole_radius = p.rng.uniform(0.8, 1.2), p.rng.uniform(0.02, 0.045)
    metal, shade_color = p.color(), p.color()
    p.add("cylinder", (0, 0, floor + base / 2), (2 * base_radius, 2 * base_radius, base), metal)
    p.add("cylinder", (0, 0, floor + base + pole / 2), (2 * pole_radius, 2 * pole_radius, pole), metal)
    shade, shade_radius = p.rng.uniform(0.3, 0.5), p.rng.uniform(0.25, 0.45)
    top = floor + base + pole
    shape = str(p.rng.choice(["cone", "cylinder"]))
    p.add(
        shape,
        (0, 0, top - 0.1 + shade / 2),
        (2 * shade_radius, 2 * shade_radius, shade),
        shade_color,
        p.texture(0.3),
    )


_BUILDERS = {"chair": _chair, "table": _table, "mug": _mug, "lamp": _lamp}


def family_parts(family: Family, rng: np.random.Generator, textured: bool = True) -> list[SceneObject]:
    """The parts of one member of ``family``, drawn from ``rng``."""
    if family not in _BUILDERS:
        raise ConfigError(f"family {family!r}: choose one of {', '.join(_BUILDERS)}")
    parts = _Parts(rng, textured)
    _BUILDERS[family](parts)
    return parts.parts
