"""Camera placement and conventions for generated datasets.

Poses are camera-to-world 4x4 matrices in nerfstudio's (OpenGL) convention: the camera looks
along its -z axis, +y is up in the image, +x is right. The world is right-handed with +z up.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Placement = Literal["orbit", "hemisphere"]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """Camera-to-world matrix of a camera at ``eye`` looking at ``target`` (OpenGL convention)."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:  # looking straight along up: pick any right vector
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right = right / np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, eye
    return c2w


def camera_poses(
    n: int,
    radius: float,
    target: np.ndarray,
    placement: Placement = "hemisphere",
    seed: int = 0,
    elevation_deg: float = 30.0,
) -> np.ndarray:
    """``n`` camera-to-world matrices around ``target``.

    ``orbit``: a circle at fixed elevation; ``hemisphere``: a deterministic Fibonacci spiral over
    the upper hemisphere (10 to 80 degrees elevation), rotated by a seeded random azimuth.
    """
    rng = np.random.default_rng(seed)
    offset = rng.uniform(0, 2 * np.pi)
    poses = []
    for i in range(n):
        if placement == "orbit":
            azimuth, elevation = offset + 2 * np.pi * i / n, np.deg2rad(elevation_deg)
        else:
            frac = (i + 0.5) / n
            elevation = np.deg2rad(10 + 70 * frac)
            azimuth = offset + i * np.pi * (3 - np.sqrt(5))  # golden angle
        direction = np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        poses.append(look_at(target + radius * direction, target))
    return np.stack(poses)


def focal_from_fov(width: int, fov_x: float) -> float:
    """Focal length in pixels of a horizontal field of view (radians)."""
    return 0.5 * width / np.tan(0.5 * fov_x)


def project(points: np.ndarray, c2w: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
    """Pixel coordinates (x right, y down; pixel centres at +0.5) of world points."""
    w2c = np.linalg.inv(c2w)
    cam = (w2c[:3, :3] @ points.T + w2c[:3, 3:]).T
    x = focal * cam[:, 0] / -cam[:, 2] + width / 2
    y = -focal * cam[:, 1] / -cam[:, 2] + height / 2
    return np.stack([x, y], axis=-1)


def pixel_rays(c2w: np.ndarray, focal: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World-space origins and unit directions through every pixel centre, [H, W, 3] each."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dirs = np.stack([(xs - width / 2) / focal, -(ys - height / 2) / focal, -np.ones_like(xs)], -1)
    dirs = dirs @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], dirs.shape).copy(), dirs
