"""The occupancy grid's occupied cells as a point cloud in the viewer's 3-D scene: where the marcher
will put samples, to see the grid's fit (floaters, holes, a box too small) while training.

One point per occupied cell, at the cell's centre, in world units. Levels of an unbounded grid
nest (level ``l`` covers the box enlarged ``2^l`` times); a position belongs to the finest level
holding it (:meth:`~nerf_loe.rendering.occupancy_grid.OccupancyGrid.cell_of`), so a coarse
cell's centre inside a finer level's box is not shown. Points are coloured by level, fine to
coarse: orange, purple, teal, grey.

Example:
    >>> grid = OccupancyGrid(torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), resolution=2)
    >>> grid.binaries[:] = False
    >>> grid.binaries[0, 1, 0, 1] = True
    >>> occupied_cells(grid)[0]
    tensor([[0.7500, 0.2500, 0.7500]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerf_loe.rendering.occupancy_grid import OccupancyGrid

#: RGB per grid level, finest first (levels past the last reuse it)
LEVEL_COLOURS = ((255, 140, 0), (150, 80, 220), (0, 170, 170), (150, 150, 150))
#: the scene-tree name of the cloud in the viewer
CLOUD_NAME = "/nerf_loe/occupancy_grid"


def occupied_cells(
    grid: OccupancyGrid, limit: int = 200_000
) -> tuple[Float[Tensor, "n 3"], Int[Tensor, " n"]]:
    """Centres (world units) and levels of the occupied cells, at most ``limit`` (an even
    subsample of the list when more are occupied, so the viewer stays responsive)."""
    res = grid.resolution
    centres, levels = [], []
    for level in range(grid.levels):
        box = grid.aabbs[level]
        ijk = torch.nonzero(grid.binaries[level]).float()
        points = box[:3] + (ijk + 0.5) / res * (box[3:] - box[:3])
        if level > 0:  # the finer level's box owns what lies inside it
            inner = grid.aabbs[level - 1]
            points = points[~((points >= inner[:3]) & (points <= inner[3:])).all(-1)]
        centres.append(points)
        levels.append(torch.full((len(points),), level, dtype=torch.long, device=points.device))
    points, level_ids = torch.cat(centres), torch.cat(levels)
    if len(points) > limit:
        keep = torch.linspace(0, len(points) - 1, limit, device=points.device).long()
        points, level_ids = points[keep], level_ids[keep]
    return points, level_ids


def draw_occupancy(scene: Any, grid: OccupancyGrid, world_scale: float, cell_scale: float = 0.5) -> Any:
    """Add (or replace) the occupied cells in a viser scene (``viser_server.scene``) as a point
    cloud; ``world_scale`` is the viewer's scene units per world unit. Returns the cloud's handle
    (``.remove()`` hides it)."""
    points, level_ids = occupied_cells(grid)
    palette = np.asarray(LEVEL_COLOURS, dtype=np.uint8)
    colours = palette[np.minimum(level_ids.cpu().numpy(), len(palette) - 1)]
    side = float((grid.aabbs[0, 3:] - grid.aabbs[0, :3]).min()) / grid.resolution
    return scene.add_point_cloud(
        CLOUD_NAME,
        points=(points.cpu().numpy() * world_scale).astype(np.float32),
        colors=colours.reshape(-1, 3),
        point_size=side * world_scale * cell_scale,
    )
