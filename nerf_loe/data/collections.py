"""Scene collections: families of related procedural scenes for dictionary (NID) training.

Every scene shares the camera rig and the kind of objects: random primitives, or with
``scene.family`` one object category (chairs, tables, mugs, lamps; :mod:`nerf_loe.data.families`);
shapes, proportions, placements, colours and textures vary with the scene's seed. The collection
folder holds one dataset per scene and an ``index.json`` listing them, with a held-out subset for
evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.progress import track

from nerf_loe.data.procedural import ProceduralSceneConfig, generate_procedural
from nerf_loe.errors import ConfigError


@dataclass
class CollectionConfig:
    """A family of procedural scenes."""

    num_scenes: int = 8
    held_out: int = 2
    """The last ``held_out`` scenes are reserved for evaluation (never used in dictionary training)."""
    base_seed: int = 1000
    scene: ProceduralSceneConfig = field(default_factory=ProceduralSceneConfig)
    """Shared settings (resolution, views, rig); each scene's seed is base_seed + i."""


def make_collection(config: CollectionConfig, out_dir: Path, show_progress: bool = True) -> Path:
    if not 0 <= config.held_out < config.num_scenes:
        raise ConfigError(f"held_out={config.held_out} must be in [0, num_scenes={config.num_scenes})")
    out_dir = Path(out_dir)
    names = [f"scene_{i:03d}" for i in range(config.num_scenes)]
    scenes = range(config.num_scenes)
    for i in track(scenes, description="scenes") if show_progress else scenes:
        generate_procedural(
            replace(config.scene, seed=config.base_seed + i), out_dir / names[i], show_progress=False
        )
    split = config.num_scenes - config.held_out
    index = {
        "scenes": names,
        "train": names[:split],
        "held_out": names[split:],
        "base_seed": config.base_seed,
        "family": config.scene.family,
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return out_dir
