"""Object families for collections: canonical pose, variation by seed, the generator's cameras."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nerf_loe.data.families import family_parts
from nerf_loe.data.procedural import ProceduralSceneConfig, _mesh, generate_procedural, make_objects
from nerf_loe.errors import ConfigError

FAMILIES = ["chair", "table", "mug", "lamp"]


def _bounds(parts) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.concatenate([_mesh(p).vertex.positions.numpy() for p in parts])
    return vertices.min(0), vertices.max(0)


def test_a_stretched_unit_part_spans_its_size():
    rng = np.random.default_rng(0)
    table = family_parts("table", rng)
    top = table[0]  # the table top: a box of the drawn width, depth and thickness
    low, high = _bounds([top])
    assert np.allclose(high - low, top.size, atol=1e-6) and np.allclose(
        (low + high) / 2, top.center, atol=1e-6
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_members_stand_upright_in_the_box_and_vary_with_the_seed(family):
    members = [family_parts(family, np.random.default_rng(seed)) for seed in range(6)]
    floors = set()
    for parts in members:
        low, high = _bounds(parts)
        assert (low > -1.0).all() and (high < 1.0).all()
        floors.add(round(float(low[2]), 6))  # every member stands on its family's floor
        assert all(np.allclose(p.rotation, np.eye(3)) or p.shape == "torus" for p in parts)  # canonical pose
    assert len(floors) == 1
    heights = {round(float(_bounds(parts)[1][2]), 3) for parts in members}
    colours = {tuple(np.round(parts[0].color, 3)) for parts in members}
    assert len(heights) == 6 and len(colours) == 6  # proportions and colours differ by seed
    again = family_parts(family, np.random.default_rng(3))
    assert [p.center.tolist() for p in again] == [p.center.tolist() for p in members[3]]


def test_families_have_their_parts():
    rng = np.random.default_rng
    chair = family_parts("chair", rng(1))
    assert len(chair) in (6, 8)  # 4 legs, seat, back (+ 2 armrests)
    mug = family_parts("mug", rng(1))
    assert [p.shape for p in mug] == ["cylinder", "torus"]
    lamp = family_parts("lamp", rng(1))
    assert [p.shape for p in lamp][:2] == ["cylinder", "cylinder"] and lamp[2].shape in ("cone", "cylinder")
    with pytest.raises(ConfigError, match="choose one of chair, table, mug, lamp"):
        family_parts("sofa", rng(1))


def test_a_family_scene_keeps_the_generators_cameras_and_format(tmp_path):
    shared = {"width": 16, "height": 16, "num_views": 6, "supersample": 1, "seed": 7}
    plain = generate_procedural(ProceduralSceneConfig(**shared), tmp_path / "plain", False)
    chair = generate_procedural(ProceduralSceneConfig(**shared, family="chair"), tmp_path / "chair", False)
    a = json.loads((plain / "transforms.json").read_text())
    b = json.loads((chair / "transforms.json").read_text())
    assert [f["transform_matrix"] for f in a["frames"]] == [f["transform_matrix"] for f in b["frames"]]
    assert sorted(p.name for p in plain.iterdir()) == sorted(p.name for p in chair.iterdir())
    from PIL import Image

    alpha = np.asarray(Image.open(chair / "images" / "r_000.png"))[..., 3]
    assert 0.02 < (alpha > 0).mean() < 0.9  # the chair is in view and does not fill it
    assert make_objects(ProceduralSceneConfig(**shared, family="chair"))[0].size is not None


def test_collection_cli_makes_a_family(tmp_path):
    out = tmp_path / "mugs"
    cmd = [
        sys.executable,
        "-m",
        "nerf_loe.data_scripts.collection",
        "--output",
        str(out),
        "--family",
        "mug",
        "--num-scenes",
        "3",
        "--held-out",
        "1",
        "--width",
        "12",
        "--height",
        "12",
        "--num-views",
        "4",
        "--supersample",
        "1",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    index = json.loads((out / "index.json").read_text())
    assert index["family"] == "mug" and index["held_out"] == ["scene_002"]
    infos = [json.loads((out / name / "dataset.json").read_text()) for name in index["scenes"]]
    assert {info["config"]["family"] for info in infos} == {"mug"}
