"""A scene collection (:mod:`nerf_loe.data.collections`) as one nerfstudio dataset: the chosen
scenes' views side by side, each camera tagged with its scene.

Every camera carries ``metadata["scene_id"]`` (its scene's position in the chosen list), which
nerfstudio's ray generator copies onto each ray (``ray_bundle.metadata["scene_id"]``), in training
and evaluation alike, so a multi-scene model (NID) knows which scene a ray belongs to. Scenes are
read with nerfstudio's Blender dataparser (the collections' own format); ``metadata["scenes"]``
lists the chosen scene names, ``metadata["family"]`` the collection's family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerf_loe.errors import DatasetError


@dataclass
class CollectionDataParserConfig(DataParserConfig):
    """A scene collection made by nerf-loe-collection."""

    _target: type = field(default_factory=lambda: CollectionDataParser)
    data: Path = Path("data/chairs")
    """The collection folder (with index.json)."""
    scenes: Literal["train", "held_out", "all"] = "train"
    """Which scenes: train (the dictionary's), held_out, or all."""
    alpha_color: str | None = "white"
    """As the Blender dataparser: composite RGBA images on this colour (None: keep the alpha)."""


class CollectionDataParser(DataParser):
    config: CollectionDataParserConfig

    def scene_names(self) -> list[str]:
        index_path = self.config.data / "index.json"
        if not index_path.is_file():
            raise DatasetError(
                f"{self.config.data} is not a scene collection (no index.json): make one with "
                "nerf-loe-collection"
            )
        index = json.loads(index_path.read_text())
        key = {"train": "train", "held_out": "held_out", "all": "scenes"}[self.config.scenes]
        names = list(index[key])
        if not names:
            raise DatasetError(f"{self.config.data}: the collection has no {self.config.scenes} scenes")
        return names

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        names = self.scene_names()
        parts = [
            BlenderDataParserConfig(data=self.config.data / name, alpha_color=self.config.alpha_color)
            .setup()
            .get_dataparser_outputs(split)
            for name in names
        ]
        cams = [p.cameras for p in parts]
        scene_id = torch.cat([torch.full((len(c), 1), i, dtype=torch.long) for i, c in enumerate(cams)])
        cameras = Cameras(
            camera_to_worlds=torch.cat([c.camera_to_worlds for c in cams]),
            fx=torch.cat([c.fx for c in cams]),
            fy=torch.cat([c.fy for c in cams]),
            cx=torch.cat([c.cx for c in cams]),
            cy=torch.cat([c.cy for c in cams]),
            width=torch.cat([c.width for c in cams]),
            height=torch.cat([c.height for c in cams]),
            camera_type=torch.cat([c.camera_type for c in cams]),
            metadata={"scene_id": scene_id},
        )
        index = json.loads((self.config.data / "index.json").read_text())
        return DataparserOutputs(
            image_filenames=[f for p in parts for f in p.image_filenames],
            cameras=cameras,
            alpha_color=parts[0].alpha_color,
            scene_box=parts[0].scene_box,
            metadata={"scenes": names, "family": index.get("family")},
        )


collection_dataparser = DataParserSpecification(
    config=CollectionDataParserConfig(),
    description="A nerf_loe scene collection (many scenes, tagged per camera).",
)
