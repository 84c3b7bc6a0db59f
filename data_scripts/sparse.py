"""nerf-loe-sparse: k-view training splits (3/6/9 by default) of a full dataset, no image copies."""

from dataclasses import dataclass
from pathlib import Path

import tyro

from nerf_loe.data.sparse import Strategy, make_sparse
from nerf_loe.data_scripts import _cli


@dataclass
class Args:
    source: Path
    """Full dataset made by nerf-loe-procedural or nerf-loe-povray."""
    output: Path
    """Folder that receives one dataset per k: <output>/<k>view."""
    views: tuple[int, ...] = (3, 6, 9)
    strategy: Strategy = "even"
    """even: spread over the non-test views; farthest: farthest-point sampling of camera centres."""


def main() -> None:
    _cli.setup()
    args = tyro.cli(Args)
    for k in args.views:
        print(make_sparse(args.source, args.output / f"{k}view", k, args.strategy))


if __name__ == "__main__":
    main()
