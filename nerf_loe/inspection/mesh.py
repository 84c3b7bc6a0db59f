"""A mesh of a density field: marching cubes over the scene box, with vertex colours from the field.

Our fields predict no normals, so nerfstudio's Poisson exporter does not apply; the surface is the
``level`` set of the density instead. Densities are evaluated on a ``resolution^3`` lattice of
the box, in chunks, only where the occupancy grid is occupied (elsewhere 0: the marcher never
shades there either); ``skimage.measure.marching_cubes`` extracts the level set; triangles of
components smaller than ``min_component`` of the largest are dropped (floaters), and each vertex
takes the colour the field shows looking at it against its outward normal.

Example (an analytic ball of radius 0.5):
    >>> ball = lambda x: 100.0 * (x.norm(dim=-1) < 0.5).float()
    >>> mesh = density_mesh(ball, torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=48, level=50.0)
    >>> radii = mesh.vertices.norm(dim=-1)
    >>> bool((radii - 0.5).abs().max() < 2 / 47), mesh.faces.shape[1]
    (True, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nerf_loe.errors import ConfigError

DensityFn = Callable[[Float[Tensor, "n 3"]], Float[Tensor, " n"]]
ColorFn = Callable[[Float[Tensor, "n 3"], Float[Tensor, "n 3"]], Float[Tensor, "n 3"]]
OccupiedFn = Callable[[Float[Tensor, "n 3"]], Bool[Tensor, " n"]]


@dataclass
class Mesh:
    vertices: Float[Tensor, "v 3"]
    """World positions."""
    faces: Int[Tensor, "f 3"]
    normals: Float[Tensor, "v 3"]
    """Outward unit normals (down the density gradient)."""
    colors: Float[Tensor, "v 3"] | None = None


def density_lattice(
    density_fn: DensityFn,
    aabb: Float[Tensor, "2 3"],
    resolution: int,
    occupied: OccupiedFn | None = None,
    chunk: int = 1 << 16,
) -> Float[Tensor, "r r r"]:
    """Densities at the ``resolution^3`` lattice points spanning ``aabb`` (corners included); 0
    where ``occupied`` says the space is empty."""
    axes = [torch.linspace(float(aabb[0, i]), float(aabb[1, i]), resolution) for i in range(3)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    densities = torch.zeros(len(points))
    with torch.no_grad():
        for start in range(0, len(points), chunk):
            part = points[start : start + chunk]
            keep = torch.ones(len(part), dtype=torch.bool) if occupied is None else occupied(part).cpu()
            if keep.any():
                values = densities[start : start + chunk]
                values[keep] = density_fn(part[keep]).float().cpu()
    return densities.reshape(resolution, resolution, resolution)


def density_mesh(
    density_fn: DensityFn,
    aabb: Float[Tensor, "2 3"],
    resolution: int = 256,
    level: float = 10.0,
    occupied: OccupiedFn | None = None,
    color_fn: ColorFn | None = None,
    min_component: float = 0.05,
) -> Mesh:
    """The ``level`` set of ``density_fn`` inside ``aabb`` (see the module docstring)."""
    from skimage.measure import marching_cubes

    if resolution < 2:
        raise ConfigError(f"--resolution {resolution}: give at least 2 lattice points per axis")
    lattice = density_lattice(density_fn, aabb, resolution, occupied).numpy()
    if not lattice.min() < level < lattice.max():
        raise ConfigError(
            f"--level {level:g}: the density inside the box spans {lattice.min():.3g} ... "
            f"{lattice.max():.3g}; pick a level inside that range"
        )
    spacing = tuple(float(aabb[1, i] - aabb[0, i]) / (resolution - 1) for i in range(3))
    corners, faces, _, _ = marching_cubes(lattice, level=level, spacing=spacing)
    normals = _outward_normals(lattice, corners, spacing)
    vertices = torch.from_numpy(corners.copy()).float() + aabb[0].float()
    vertices, faces, normals = _drop_small_components(
        vertices, torch.from_numpy(faces.astype(np.int64)), normals, min_component
    )
    colors = None
    if color_fn is not None:
        chunk = 1 << 16
        with torch.no_grad():
            colors = torch.cat(
                [
                    color_fn(vertices[s : s + chunk], -normals[s : s + chunk]).float().cpu()
                    for s in range(0, len(vertices), chunk)
                ]
            )
    return Mesh(vertices, faces, normals, colors)


def _outward_normals(lattice: np.ndarray, corners: np.ndarray, spacing: tuple[float, ...]) -> Tensor:
    """Unit normals down the density gradient (out of the dense side), the lattice's central
    differences interpolated trilinearly at the vertices."""
    from scipy.ndimage import map_coordinates

    coords = (corners / np.asarray(spacing)).T
    gradient = np.stack(
        [map_coordinates(g, coords, order=1, mode="nearest") for g in np.gradient(lattice, *spacing)], axis=-1
    )
    return -torch.nn.functional.normalize(torch.from_numpy(gradient).float(), dim=-1)


def _drop_small_components(
    vertices: Tensor, faces: Tensor, normals: Tensor, min_component: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the triangles of connected components with at least ``min_component`` times the
    largest one's triangles, and the vertices they use."""
    if len(faces) == 0 or min_component <= 0:
        return vertices, faces, normals
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = faces.numpy()
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(vertices), len(vertices)))
    _, label = connected_components(graph, directed=False)
    face_label = label[f[:, 0]]
    sizes = np.bincount(face_label)
    keep_faces = sizes[face_label] >= min_component * sizes.max()
    f = f[keep_faces]
    used = np.unique(f)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    keep = torch.from_numpy(used)
    return vertices[keep], torch.from_numpy(remap[f]), normals[keep]


def write_mesh(mesh: Mesh, path) -> None:
    """PLY or OBJ (by the suffix) with vertex colours and normals, written by open3d."""
    import open3d as o3d

    out = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(mesh.vertices.double().numpy()),
        o3d.utility.Vector3iVector(mesh.faces.int().numpy()),
    )
    out.vertex_normals = o3d.utility.Vector3dVector(mesh.normals.double().numpy())
    if mesh.colors is not None:
        out.vertex_colors = o3d.utility.Vector3dVector(mesh.colors.clamp(0, 1).double().numpy())
    if not o3d.io.write_triangle_mesh(str(path), out):
        raise ConfigError(f"could not write the mesh to {path} (use a .ply or .obj name)")
