"""nerf-loe-procedural: render a procedural open3d scene into a dataset."""

from dataclasses import dataclass, field
from pathlib import Path

import tyro

from nerf_loe.data.procedural import ProceduralSceneConfig, generate_procedural
from nerf_loe.data_scripts import _cli


@dataclass
class Args:
    output: Path
    """Dataset folder to write."""
    scene: ProceduralSceneConfig = field(default_factory=ProceduralSceneConfig)


def main() -> None:
    _cli.setup()
    args = tyro.cli(Args)
    print(generate_procedural(args.scene, args.output))


if __name__ == "__main__":
    main()
