"""A turntable camera path around what the training cameras look at, for ``ns-render camera-path``.

nerfstudio 1.1.5 renders interpolated and spiral paths itself but has no orbit; the viewer's
camera-path JSON is its way in. The orbit circles the training cameras' focus point (the point
nearest to all their optical axes) about their mean up vector, at their median distance and mean
elevation, with their field of view, so a turntable of an orbit capture looks like its photos.

Run: ``nerf-loe-orbit --load-config outputs/.../config.yml --output orbit.json``, then
``ns-render camera-path --load-config <same> --camera-path-filename orbit.json --output-path
turntable.mp4``.

Example::

    >>> import torch
    >>> angles = torch.linspace(0, 6.283, 9)[:-1]
    >>> positions = torch.stack([4 * angles.cos(), 4 * angles.sin(), torch.full_like(angles, 1.0)], -1)
    >>> path = orbit_path(positions, -positions, torch.tensor([0.0, 0.0, 1.0]), 60.0, 64, 48, frames=4)
    >>> len(path["camera_path"]), path["render_width"], path["render_height"]
    (4, 64, 48)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from nerf_loe.data.cameras import look_at
from nerf_loe.data.extent import focus_point
from nerf_loe.errors import ConfigError, install_excepthook


def orbit_path(
    positions: Float[Tensor, "n 3"],
    directions: Float[Tensor, "n 3"],
    up: Float[Tensor, " 3"],
    fov_deg: float,
    width: int,
    height: int,
    frames: int = 120,
    seconds: float = 4.0,
) -> dict[str, Any]:
    """nerfstudio camera-path JSON (as the viewer writes it) of ``frames`` views evenly spaced on one
    turn around the cameras' focus, starting beside the first camera.

    Args:
        positions, directions: the training cameras' centres and viewing directions (world frame
            of the trained model, as the data parser gives them).
        up: the scene's up vector (the cameras' mean y axis).
        fov_deg: vertical field of view of the rendered frames.
        width, height: frame size in pixels.
    """
    if frames < 1 or seconds <= 0:
        raise ConfigError(f"an orbit needs frames >= 1 and seconds > 0, got {frames} and {seconds}")
    centre = focus_point(positions, directions)
    if centre is None:
        raise ConfigError(
            "the training cameras share no focus point (a forward-facing capture): "
            "use ns-render spiral or interpolate instead of an orbit"
        )
    up = torch.nn.functional.normalize(up.float(), dim=0)
    offsets = positions.float() - centre
    radius = float(offsets.norm(dim=-1).median())
    elevation = float(torch.asin((offsets @ up / offsets.norm(dim=-1)).clamp(-1, 1)).mean())
    first = offsets[0] - (offsets[0] @ up) * up  # the first camera's bearing in the ground plane
    if float(first.norm()) < 1e-6 * radius:  # it looks straight down: any bearing
        first = torch.linalg.cross(up, torch.eye(3)[int(up.abs().argmin())])
    east = torch.nn.functional.normalize(first, dim=0)
    north = torch.linalg.cross(up, east)
    path = []
    for k in range(frames):
        angle = 2 * math.pi * k / frames
        bearing = math.cos(angle) * east + math.sin(angle) * north
        position = centre + radius * (math.cos(elevation) * bearing + math.sin(elevation) * up)
        c2w = look_at(position.double().numpy(), centre.double().numpy(), up.double().numpy())
        path.append({"camera_to_world": c2w.flatten().tolist(), "fov": fov_deg, "aspect": width / height})
    return {
        "camera_type": "perspective",
        "render_width": width,
        "render_height": height,
        "fps": frames / seconds,
        "seconds": seconds,
        "is_cycle": True,
        "smoothness_value": 0.0,
        "crop": None,
        "camera_path": path,
    }


def fov_of(fy: float, height: int) -> float:
    """Vertical field of view in degrees of a camera of focal length ``fy`` pixels and ``height``."""
    return math.degrees(2 * math.atan(0.5 * height / fy))


@dataclass
class OrbitPath:
    load_config: Path
    """A training run's config.yml (as for ns-render)."""
    output: Path = Path("orbit.json")
    """Where to write the camera path; render it with ``ns-render camera-path --load-config <same>
    --camera-path-filename <output> --output-path turntable.mp4``."""
    frames: int = 120
    seconds: float = 4.0
    scale: float = 1.0
    """Frame size relative to the training images."""


def write_orbit(args: OrbitPath) -> Path:
    """Write the orbit of ``args.load_config``'s training cameras; returns the output path."""
    import yaml

    if not args.load_config.is_file():
        raise ConfigError(f"--load-config {args.load_config}: no such file (a run's config.yml)")
    if args.scale <= 0:
        raise ConfigError(f"--scale must be positive, got {args.scale}")
    config = yaml.load(args.load_config.read_text(), Loader=yaml.Loader)
    datamanager = config.pipeline.datamanager
    dataparser = datamanager.dataparser
    if getattr(datamanager, "data", None) is not None:  # as the data manager does
        dataparser.data = datamanager.data
    cameras = dataparser.setup().get_dataparser_outputs("train").cameras
    poses = cameras.camera_to_worlds.float()
    height, width = int(cameras.height[0]), int(cameras.width[0])
    path = orbit_path(
        poses[:, :3, 3],
        -poses[:, :3, 2],
        poses[:, :3, 1].mean(dim=0),
        fov_of(float(cameras.fy[0]), height),
        max(1, round(width * args.scale)),
        max(1, round(height * args.scale)),
        args.frames,
        args.seconds,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(path, indent=1))
    return args.output


def main() -> None:
    install_excepthook()
    args = tyro.cli(OrbitPath)
    CONSOLE.print(f"orbit camera path: {write_orbit(args)} ({args.frames} frames)")


if __name__ == "__main__":
    main()
