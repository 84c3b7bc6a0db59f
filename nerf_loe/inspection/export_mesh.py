"""``nerf-loe-export-mesh``: a coloured mesh of a trained nerf_loe model's density field.

Run: ``nerf-loe-export-mesh --load-config outputs/.../config.yml --output mesh.ply``. The
methods of this package predict no normals, so ``ns-export poisson`` does not apply to them; this
exporter takes the density's level set instead (:mod:`nerf_loe.inspection.mesh`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from nerf_loe.errors import ConfigError, install_excepthook
from nerf_loe.inspection.mesh import density_mesh, write_mesh


@dataclass
class ExportMesh:
    load_config: Path
    """A training run's config.yml (as for ns-export)."""
    output: Path = Path("mesh.ply")
    """Where to write the mesh: .ply or .obj."""
    resolution: int = 256
    """Lattice points per axis of the scene box."""
    level: float = 10.0
    """Density of the surface, per world unit: 10 makes a layer of one box-width/100 about 10%
    opaque; raise it to drop haze, lower it to close holes."""
    min_component: float = 0.05
    """Drop connected pieces smaller than this share of the largest (floaters)."""
    scene: int = 0
    """Which scene of a scene collection's model (nid-dictionary) to export; 0 for one-scene models."""


def export(args: ExportMesh) -> Path:
    from nerfstudio.utils.eval_utils import eval_setup

    if not args.load_config.is_file():
        raise ConfigError(f"--load-config {args.load_config}: no such file (a run's config.yml)")
    _, pipeline, _, step = eval_setup(args.load_config, test_mode="inference")
    model = pipeline.model
    field = getattr(model, "field", None)
    if not hasattr(field, "density_at") or not hasattr(model, "viewed_marcher"):
        raise ConfigError(
            f"{type(model).__name__} is not a nerf_loe model; use ns-export for nerfstudio's methods"
        )
    scenes = len(getattr(model, "marchers", [None]))
    if not 0 <= args.scene < scenes:
        raise ConfigError(f"--scene {args.scene}: this model holds {scenes} scene(s), 0 to {scenes - 1}")
    if hasattr(model, "marchers"):  # the scene's code mixes the experts, its grid culls
        model.viewer_scene.value = args.scene
        field.trunk.scene = args.scene
    grid = model.viewed_marcher().grid
    device = model.device
    mesh = density_mesh(
        lambda x: field.density_at(x.to(device)),
        model.scene_box.aabb,
        resolution=args.resolution,
        level=args.level,
        occupied=lambda x: grid.is_occupied(x.to(device)),
        color_fn=lambda x, d: field.colors_at(x.to(device), d.to(device)),
        min_component=args.min_component,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_mesh(mesh, args.output)
    CONSOLE.print(
        f"step {step}: {len(mesh.vertices):,} vertices, {len(mesh.faces):,} triangles -> {args.output}"
    )
    return args.output


def main() -> None:
    install_excepthook()
    export(tyro.cli(ExportMesh))


if __name__ == "__main__":
    main()
