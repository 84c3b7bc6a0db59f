"""Procedural scenes rendered with open3d ray casting: no system renderer needed.

A scene is a few primitives (sphere, box, torus, cylinder, cone) inside [-1, 1]^3, each with a
flat colour or a texture from scikit-image's bundled photos (spherical mapping in the object's
frame), shaded Lambert + Blinn-Phong under one directional light, on a transparent background.
Cameras are exact, so the datasets serve tests (a 64x64, 40-view scene renders in seconds),
the demo fallback, and scene collections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from rich.progress import track

from nerf_loe.data.cameras import Placement, camera_poses, focal_from_fov, pixel_rays
from nerf_loe.data.formats import check_views, default_splits, frame_name, write_transforms

SHAPES = ("sphere", "box", "torus", "cylinder", "cone")
Family = Literal["chair", "table", "mug", "lamp"]
TEXTURES = ("astronaut", "coffee", "chelsea")
LIGHT = np.array([0.4, -0.3, 0.87]) / np.linalg.norm([0.4, -0.3, 0.87])


@dataclass
class SceneObject:
    shape: str
    center: np.ndarray
    rotation: np.ndarray
    scale: float
    color: np.ndarray
    texture: str | None = None
    size: np.ndarray | None = None
    """Per-axis extent of the unit primitive (a part of a family object: a table top is a flat box);
    None: the primitive's own proportions, scaled by ``scale``."""


@dataclass
class ProceduralSceneConfig:
    """A procedural scene and how to photograph it."""

    seed: int = 0
    """Seeds the objects (shapes, placements, colours, textures) and the camera azimuth."""
    num_objects: int = 4
    width: int = 64
    height: int = 64
    num_views: int = 40
    radius: float = 4.0
    """Camera distance from the origin (objects lie within [-1, 1]^3)."""
    fov_deg: float = 40.0
    placement: Placement = "hemisphere"
    textured: bool = True
    """Give some objects photo textures (else flat colours only)."""
    supersample: int = 2
    """Rays per pixel axis (anti-aliasing)."""
    shapes: tuple[str, ...] = field(default_factory=lambda: SHAPES)
    background: Literal["transparent", "white", "sky"] = "transparent"
    """transparent: RGBA images (alpha = coverage); white: RGB images composited on white; sky:
    RGB images over a sky whose colour varies with the view direction (an open scene)."""
    ground: bool = False
    """A checkered ground plane under the objects, running far past the cameras (an open scene:
    content beyond any box around the cameras)."""
    family: Family | None = None
    """One object of a family (chair, table, mug, lamp) in canonical pose, its proportions, colours
    and textures drawn from the seed (:mod:`nerf_loe.data.families`), instead of random primitives."""

    def __post_init__(self) -> None:
        check_views(self.width, self.height, self.num_views, self.fov_deg)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def make_objects(config: ProceduralSceneConfig) -> list[SceneObject]:
    rng = np.random.default_rng(config.seed)
    if config.family is not None:
        from nerf_loe.data.families import family_parts

        return family_parts(config.family, rng, textured=config.textured)
    objects = []
    for _ in range(config.num_objects):
        shape = str(rng.choice(config.shapes))
        texture = str(rng.choice(TEXTURES)) if config.textured and rng.random() < 0.5 else None
        objects.append(
            SceneObject(
                shape=shape,
                center=np.array([*rng.uniform(-0.6, 0.6, 2), rng.uniform(-0.4, 0.4)]),
                rotation=_rotation(rng),
                scale=float(rng.uniform(0.25, 0.45)),
                color=rng.uniform(0.15, 0.95, 3),
                texture=texture,
            )
        )
    return objects


def _unit_mesh(shape: str):
    """A primitive filling the unit cube [-0.5, 0.5]^3 (torus: a ring of tube radius 0.15)."""
    import open3d as o3d

    makers = {
        "sphere": lambda: o3d.geometry.TriangleMesh.create_sphere(0.5, resolution=32),
        "box": lambda: o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0).translate((-0.5, -0.5, -0.5)),
        "torus": lambda: o3d.geometry.TriangleMesh.create_torus(0.35, 0.15, 40, 20),
        "cylinder": lambda: o3d.geometry.TriangleMesh.create_cylinder(0.5, 1.0, 40),
        "cone": lambda: o3d.geometry.TriangleMesh.create_cone(0.5, 1.0, 40).translate((0, 0, -0.5)),
    }
    return makers[shape]()


def _mesh(obj: SceneObject):
    import open3d as o3d

    if obj.size is not None:
        mesh = _unit_mesh(obj.shape)
        mesh.vertices = o3d.utility.Vector3dVector(np.asarray(mesh.vertices) * obj.size)
        mesh.rotate(obj.rotation, center=(0, 0, 0))
        mesh.translate(obj.center)
        return o3d.t.geometry.TriangleMesh.from_legacy(mesh)
    makers = {
        "sphere": lambda: o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=32),
        "box": lambda: o3d.geometry.TriangleMesh.create_box(1.4, 1.4, 1.4).translate((-0.7, -0.7, -0.7)),
        "torus": lambda: o3d.geometry.TriangleMesh.create_torus(0.8, 0.3, 40, 20),
        "cylinder": lambda: o3d.geometry.TriangleMesh.create_cylinder(0.6, 1.6, 40),
        "cone": lambda: o3d.geometry.TriangleMesh.create_cone(0.7, 1.5, 40).translate((0, 0, -0.6)),
    }
    mesh = makers[obj.shape]()
    mesh.scale(obj.scale, center=(0, 0, 0))
    mesh.rotate(obj.rotation, center=(0, 0, 0))
    mesh.translate(obj.center)
    return o3d.t.geometry.TriangleMesh.from_legacy(mesh)


#: The ground plane: ``z = GROUND_Z`` (below every object), ``GROUND_HALF_SIZE`` to each side,
#: checkered in squares of ``GROUND_TILE``.
GROUND_Z, GROUND_HALF_SIZE, GROUND_TILE = -0.9, 50.0, 0.5


def _ground_mesh():
    import open3d as o3d

    h = GROUND_HALF_SIZE
    vertices = np.array([[-h, -h, GROUND_Z], [h, -h, GROUND_Z], [h, h, GROUND_Z], [-h, h, GROUND_Z]])
    triangles = np.array([[0, 1, 2], [0, 2, 3]])
    return o3d.t.geometry.TriangleMesh(
        o3d.core.Tensor(vertices, o3d.core.float32), o3d.core.Tensor(triangles, o3d.core.int32)
    )


def ground_albedo(points: np.ndarray) -> np.ndarray:
    """Two-tone checker of the ground plane."""
    cells = np.floor(points[:, :2] / GROUND_TILE).sum(-1) % 2
    return np.where(cells[:, None] > 0, [0.75, 0.7, 0.6], [0.3, 0.35, 0.3])


def sky_color(directions: np.ndarray) -> np.ndarray:
    """Sky seen along unit ``directions``: pale at the horizon, blue towards the zenith."""
    up = np.clip(directions[:, 2:3], 0.0, 1.0)
    return (1.0 - up) * np.array([0.85, 0.88, 0.92]) + up * np.array([0.25, 0.45, 0.85])


def _texture(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255.0


class ProceduralRenderer:
    """Ray-casts a list of :class:`SceneObject` with open3d."""

    def __init__(self, objects: list[SceneObject], ground: bool = False) -> None:
        import open3d as o3d

        self.objects = objects
        self.scene = o3d.t.geometry.RaycastingScene()
        self.ids = [self.scene.add_triangles(_mesh(obj)) for obj in objects]
        self.ground_id = self.scene.add_triangles(_ground_mesh()) if ground else None
        self.textures = {obj.texture: _texture(obj.texture) for obj in objects if obj.texture}

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point [n, 3] to the nearest surface of the scene (the ground included
        when present): ground truth for exported geometry."""
        return self.scene.compute_distance(np.asarray(points, dtype=np.float32)).numpy()

    def albedo(self, obj: SceneObject, points: np.ndarray) -> np.ndarray:
        if obj.texture is None:
            return np.broadcast_to(obj.color, points.shape)
        local = (points - obj.center) @ obj.rotation / obj.scale
        r = np.linalg.norm(local, axis=-1).clip(min=1e-8)
        u = np.arctan2(local[:, 1], local[:, 0]) / (2 * np.pi) + 0.5
        v = np.arccos(np.clip(local[:, 2] / r, -1, 1)) / np.pi
        tex = self.textures[obj.texture]
        rows = (v * (tex.shape[0] - 1)).astype(int)
        cols = (u * (tex.shape[1] - 1)).astype(int)
        return tex[rows, cols]

    def render(
        self, c2w: np.ndarray, focal: float, width: int, height: int, supersample: int = 1
    ) -> np.ndarray:
        """RGBA float image [H, W, 4] (premultiplied colour on a transparent background)."""
        s = supersample
        origins, dirs = pixel_rays(c2w, focal * s, width * s, height * s)
        rays = np.concatenate([origins, dirs], -1).reshape(-1, 6).astype(np.float32)
        hits = self.scene.cast_rays(rays)
        t = hits["t_hit"].numpy()
        geometry = hits["geometry_ids"].numpy()
        normals = hits["primitive_normals"].numpy()
        rgba = np.zeros((rays.shape[0], 4), dtype=np.float32)
        hit = np.isfinite(t)
        d = rays[hit, 3:]
        n = normals[hit]
        n = np.where((n * d).sum(-1, keepdims=True) > 0, -n, n)
        points = rays[hit, :3] + t[hit, None] * d
        color = np.zeros_like(points)
        for obj, gid in zip(self.objects, self.ids, strict=True):
            mask = geometry[hit] == gid
            if mask.any():
                color[mask] = self.albedo(obj, points[mask])
        if self.ground_id is not None:
            mask = geometry[hit] == self.ground_id
            color[mask] = ground_albedo(points[mask])
        diffuse = np.clip(n @ LIGHT, 0, None)[:, None]
        half = LIGHT[None] - d
        half /= np.linalg.norm(half, axis=-1, keepdims=True)
        specular = np.clip((n * half).sum(-1), 0, None)[:, None] ** 32 * 0.35
        rgba[hit, :3] = np.clip(color * (0.25 + 0.75 * diffuse) + specular, 0, 1)
        rgba[hit, 3] = 1.0
        return rgba.reshape(height, s, width, s, 4).mean(axis=(1, 3))


def generate_procedural(config: ProceduralSceneConfig, out_dir: Path, show_progress: bool = True) -> Path:
    """Render ``config`` into a dataset folder (see :mod:`nerf_loe.data.formats`)."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    renderer = ProceduralRenderer(make_objects(config), ground=config.ground)
    poses = camera_poses(config.num_views, config.radius, np.zeros(3), config.placement, config.seed)
    focal = focal_from_fov(config.width, np.deg2rad(config.fov_deg))
    views = range(config.num_views)
    for i in track(views, description="rendering views") if show_progress else views:
        rgba = renderer.render(poses[i], focal, config.width, config.height, config.supersample)
        if config.background == "white":  # premultiplied colour over white
            image, mode = rgba[..., :3] + (1.0 - rgba[..., 3:]), "RGB"
        elif config.background == "sky":
            directions = pixel_rays(poses[i], focal, config.width, config.height)[1]
            sky = sky_color(directions.reshape(-1, 3)).reshape(directions.shape)
            image, mode = rgba[..., :3] + (1.0 - rgba[..., 3:]) * sky, "RGB"
        else:
            image, mode = rgba.copy(), "RGBA"
            image[..., :3] = rgba[..., :3] / np.clip(rgba[..., 3:], 1e-6, None)
        Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mode).save(
            out_dir / "images" / f"{frame_name(i)}.png"
        )
    info = {"generator": "procedural", "config": {k: v for k, v in vars(config).items()}}
    info["config"]["shapes"] = list(config.shapes)
    write_transforms(
        out_dir, "images", poses, config.width, config.height, focal, default_splits(config.num_views), info
    )
    return out_dir
