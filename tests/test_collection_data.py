"""A scene collection read as one nerfstudio dataset: cameras tagged with their scene, per split."""

import json

import pytest
import torch

from nerf_loe.data.collection_dataparser import CollectionDataParserConfig
from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data.procedural import ProceduralSceneConfig
from nerf_loe.errors import DatasetError


@pytest.fixture(scope="module")
def chairs(tmp_path_factory):
    scene = ProceduralSceneConfig(width=12, height=10, num_views=16, supersample=1, family="chair")
    return make_collection(
        CollectionConfig(num_scenes=3, held_out=1, scene=scene), tmp_path_factory.mktemp("c"), False
    )


def _transforms(scene_dir, split):
    return json.loads((scene_dir / f"transforms_{split}.json").read_text())["frames"]


def test_training_views_of_the_training_scenes_each_tagged_with_its_scene(chairs):
    outputs = CollectionDataParserConfig(data=chairs).setup().get_dataparser_outputs("train")
    per_scene = [len(_transforms(chairs / name, "train")) for name in ("scene_000", "scene_001")]
    assert len(outputs.image_filenames) == len(outputs.cameras) == sum(per_scene)
    assert outputs.metadata["scenes"] == ["scene_000", "scene_001"] and outputs.metadata["family"] == "chair"
    ids = outputs.cameras.metadata["scene_id"][:, 0]
    assert ids.tolist() == [0] * per_scene[0] + [1] * per_scene[1]
    # the second scene's first camera is its transforms' first frame
    first = torch.tensor(_transforms(chairs / "scene_001", "train")[0]["transform_matrix"])[:3]
    assert torch.allclose(outputs.cameras.camera_to_worlds[per_scene[0]], first)
    assert all(f.parent.parent.name in ("scene_000", "scene_001") for f in outputs.image_filenames)
    # every ray of a camera carries the camera's scene
    rays = outputs.cameras.generate_rays(camera_indices=per_scene[0] + 1)
    assert (rays.metadata["scene_id"] == 1).all() and rays.metadata["scene_id"].shape[:2] == (10, 12)


def test_evaluation_views_and_held_out_scenes(chairs):
    test = CollectionDataParserConfig(data=chairs).setup().get_dataparser_outputs("test")
    assert len(test.cameras) == sum(len(_transforms(chairs / n, "test")) for n in ("scene_000", "scene_001"))
    held = CollectionDataParserConfig(data=chairs, scenes="held_out").setup().get_dataparser_outputs("train")
    assert held.metadata["scenes"] == ["scene_002"] and (held.cameras.metadata["scene_id"] == 0).all()


def test_a_folder_without_index_is_reported(tmp_path):
    with pytest.raises(
        DatasetError, match="is not a scene collection .no index.json.: make one with nerf-loe-collection"
    ):
        CollectionDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")
