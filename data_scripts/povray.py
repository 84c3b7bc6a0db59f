"""nerf-loe-povray: render a POV-Ray scene file into a dataset with exact cameras."""

from dataclasses import dataclass, field
from pathlib import Path

import tyro

from nerf_loe.data.povray import PovrayConfig, render_povray_scene
from nerf_loe.data_scripts import _cli


@dataclass
class Args:
    scene: Path
    """POV-Ray scene (.pov); Debian's povray-examples ships ~400 under /usr/share/doc/povray/examples."""
    output: Path
    """Dataset folder to write."""
    render: PovrayConfig = field(default_factory=PovrayConfig)


def main() -> None:
    _cli.setup()
    args = tyro.cli(Args)
    print(render_povray_scene(args.scene, args.output, args.render))


if __name__ == "__main__":
    main()
