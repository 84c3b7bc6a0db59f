"""nerf-loe-collection: a family of related procedural scenes with an index and held-out subset."""

from dataclasses import dataclass, field
from pathlib import Path

import tyro

from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data_scripts import _cli


@dataclass
class Args:
    output: Path
    collection: tyro.conf.OmitArgPrefixes[CollectionConfig] = field(default_factory=CollectionConfig)
    """Flags without prefixes: --num-scenes, --held-out, --family, --width, ..."""


def main() -> None:
    _cli.setup()
    args = tyro.cli(Args)
    print(make_collection(args.collection, args.output))


if __name__ == "__main__":
    main()
