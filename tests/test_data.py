"""Data tools: camera convention proven by projection, splits, collections, renderer errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from nerf_loe.data.cameras import focal_from_fov, project
from nerf_loe.data.collections import CollectionConfig, make_collection
from nerf_loe.data.formats import read_info
from nerf_loe.data.procedural import ProceduralRenderer, ProceduralSceneConfig, SceneObject
from nerf_loe.data.sparse import make_sparse
from nerf_loe.errors import ConfigError, DatasetError, RendererError

needs_povray = pytest.mark.skipif(
    shutil.which("povray") is None, reason="povray not installed (make test installs it)"
)


def alpha_centroid(rgba: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > 0.5)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def load_views(dataset, split="train"):
    from PIL import Image

    meta = json.loads((dataset / f"transforms_{split}.json").read_text())
    for frame in meta["frames"]:
        image = np.asarray(Image.open(dataset / (frame["file_path"][2:] + ".png"))).astype(np.float32) / 255
        yield np.array(frame["transform_matrix"]), meta["camera_angle_x"], image


def test_procedural_projection_matches_rendered_pixels():
    point = np.array([0.3, -0.2, 0.25])
    ball = SceneObject("sphere", point, np.eye(3), 0.05, np.ones(3))
    renderer = ProceduralRenderer([ball])
    from nerf_loe.data.cameras import camera_poses

    width, height = 96, 72
    focal = focal_from_fov(width, np.deg2rad(40))
    for c2w in camera_poses(2, 4.0, np.zeros(3), "hemisphere", seed=1):
        rgba = renderer.render(c2w, focal, width, height)
        predicted = project(point[None], c2w, focal, width, height)[0]
        assert np.abs(alpha_centroid(rgba) - predicted).max() < 0.75


@needs_povray
def test_povray_projection_matches_rendered_pixels(tmp_path):
    from nerf_loe.data.povray import PovrayConfig, pov_to_world, render_povray_scene

    pov_point = np.array([1.0, 2.0, 3.0])
    scene = tmp_path / "ball.pov"
    scene.write_text(
        "sphere { <1, 2, 3>, 0.25 pigment { rgb 1 } finish { emission 1 } }\n"
        "camera { location <0, 12, -20> look_at <0, 1, 0> }\n"
    )
    config = PovrayConfig(width=96, height=72, num_views=2, antialias=None, seed=3)
    dataset = render_povray_scene(scene, tmp_path / "ds", config, show_progress=False)
    info = read_info(dataset)
    world = pov_to_world(pov_point[None], np.array(info["pov_look_at"]), info["pov_scale"])
    meta = json.loads((dataset / "transforms.json").read_text())
    from PIL import Image

    for frame in meta["frames"]:
        rgba = np.asarray(Image.open(dataset / frame["file_path"])).astype(np.float32) / 255
        predicted = project(world, np.array(frame["transform_matrix"]), meta["fl_x"], 96, 72)[0]
        assert np.abs(alpha_centroid(rgba) - predicted).max() < 0.75


@needs_povray
def test_povray_bbox_framing_ignores_infinite_objects(tmp_path):
    """The measured box bounds the two spheres (to a probe pixel), not the floor plane or the sky."""
    from nerf_loe.data.povray import PovrayConfig, orbit_framing, scene_bounds

    scene = tmp_path / "two.pov"
    scene.write_text(
        "sphere { <1, 2, 3>, 0.5 pigment { rgb 1 } }\n"
        "sphere { <-2, 1, 0>, 1 pigment { rgb <1, 0, 0> } }\n"
        "plane { y, 0 pigment { rgb 0.5 } }\n"
        "sky_sphere { pigment { rgb <0.5, 0.6, 1> } }\n"
        "light_source { <10, 20, -10> rgb 1 }\n"
        "camera { location <0, 5, -12> look_at <0, 1, 0> }\n"
    )
    povray = shutil.which("povray")
    half, resolution = 10.0, 80
    lo, hi = scene_bounds(povray, scene, np.array([0.0, 1.0, 0.0]), half, resolution)
    pixel = 2 * half / resolution
    np.testing.assert_allclose(lo, [-3.0, 0.0, -1.0], atol=pixel)
    np.testing.assert_allclose(hi, [1.5, 2.5, 3.5], atol=pixel)

    config = PovrayConfig(width=80, height=60)
    focal = focal_from_fov(80, np.deg2rad(config.fov_deg))
    centre, radius = orbit_framing(povray, scene, config, focal)
    np.testing.assert_allclose(centre, [-0.75, 1.25, 1.25], atol=pixel)
    box_radius = np.linalg.norm([4.5, 2.5, 4.5]) / 2
    assert box_radius / np.sin(np.arctan(30 / focal)) == pytest.approx(radius, rel=0.15)
    # The scene camera's framing is kept on request, and explicit values override both.
    centre, radius = orbit_framing(povray, scene, PovrayConfig(framing="camera"), focal)
    np.testing.assert_allclose(centre, [0.0, 1.0, 0.0])
    assert radius == pytest.approx(np.linalg.norm([0.0, 4.0, -12.0]))
    config = PovrayConfig(look_at=(1.0, 2.0, 3.0), radius=7.0)
    assert orbit_framing(povray, scene, config, focal)[1] == 7.0


def test_povray_scene_camera_is_the_last_one_outside_comments(tmp_path):
    """POV-Ray's scene camera is the last placed one; comments (nested too) and strings don't count."""
    from nerf_loe.data.povray import scene_framing

    scene = tmp_path / "cameras.pov"

    def assert_camera(text, location, look_at):
        scene.write_text(text)
        found = scene_framing(scene)
        np.testing.assert_array_equal(found[0], location)
        np.testing.assert_array_equal(found[1], look_at)

    assert_camera(
        "#declare camera_pos = <0, 3, -9>;\n"
        "camera { location <1, 1, 1> look_at <0, 0, 0> }  // replaced by the camera below\n"
        "#declare Spare = camera { location <4, 4, 4> look_at <0, 0, 0> }\n"
        "sphere { 0, 1 pigment { rgb 1 } }\n"
        "camera {\n"
        "  location <2, 3, -9>  // camera { location <6, 6, 6> look_at <0, 0, 0> }\n"
        "  normal { bumps 0.2 scale <1, 2, 1> }\n"
        "  look_at <0, 1.5, 0>\n"
        "}\n"
        "// camera { location <7, 7, 7> look_at <0, 0, 0> }\n"
        "/* retired cameras:\n"
        "   /* camera { location <8, 8, 8> look_at <0, 0, 0> } */\n"
        "   camera { location <9, 9, 9> look_at <0, 0, 0> }\n"
        "*/\n"
        '#debug "camera { location <10, 10, 10> look_at <0, 0, 0> } \\" }\\n"\n',
        [2.0, 3.0, -9.0],
        [0.0, 1.5, 0.0],
    )

    # camera { Name } starts from the declared camera Name; a lone declared camera is used as is.
    assert_camera(
        "#declare Front = camera { location <0, 1, -40> look_at <0, 1, 0> }\n"
        "#declare Diagonal = camera { location <20, 20, -20> right x look_at <0, 0.5, 0> }\n"
        "camera{Diagonal}\n",
        [20.0, 20.0, -20.0],
        [0.0, 0.5, 0.0],
    )
    assert_camera(
        "#declare MyCamera = camera { location <1, 2, 3> look_at <4, 5, 6> }\n",
        [1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0],
    )
    # Expressions are not evaluated: such items are None.
    scene.write_text("camera { location <0, 2*3, -9> look_at y }\n")
    assert scene_framing(scene) == (None, None)


@needs_povray
def test_povray_framing_without_camera_or_finite_geometry_asks_for_options(tmp_path):
    from nerf_loe.data.povray import PovrayConfig, orbit_framing

    scene = tmp_path / "empty.pov"
    scene.write_text(
        "plane { y, 0 pigment { rgb 0.5 } }\n"
        "sky_sphere { pigment { rgb <0.5, 0.6, 1> } }\n"
        "light_source { <10, 20, -10> rgb 1 }\n"
    )
    povray = shutil.which("povray")
    focal = focal_from_fov(80, np.deg2rad(40.0))
    for framing in ("bbox", "camera"):
        with pytest.raises(RendererError) as error:
            orbit_framing(povray, scene, PovrayConfig(width=80, height=60, framing=framing), focal)
        message = str(error.value)
        assert "\n" not in message and str(scene) in message
        assert "--render.look-at X Y Z" in message and "--render.radius R" in message
    with pytest.raises(RendererError, match=r"pass --render.radius R$"):
        orbit_framing(povray, scene, PovrayConfig(look_at=(0.0, 1.0, 0.0)), focal)
    with pytest.raises(RendererError, match=r"pass --render.look-at X Y Z$"):
        orbit_framing(povray, scene, PovrayConfig(radius=5.0, framing="camera"), focal)
    centre, radius = orbit_framing(povray, scene, PovrayConfig(look_at=(0.0, 1.0, 0.0), radius=5.0), focal)
    np.testing.assert_array_equal(centre, [0.0, 1.0, 0.0])
    assert radius == 5.0

    # One option given: the other comes from the box (no camera needed) ...
    scene.write_text(scene.read_text() + "sphere { <1, 2, 3>, 1 pigment { rgb 1 } }\n")
    centre, radius = orbit_framing(povray, scene, PovrayConfig(width=80, height=60, radius=5.0), focal)
    np.testing.assert_allclose(centre, [1.0, 2.0, 3.0], atol=0.5)
    assert radius == 5.0
    # ... or from the camera's location, measured from the given centre.
    scene.write_text("camera { location <0, 4, -3> look_at y }\n")
    centre, radius = orbit_framing(
        povray, scene, PovrayConfig(look_at=(0.0, 0.0, 1.0), framing="camera"), focal
    )
    np.testing.assert_array_equal(centre, [0.0, 0.0, 1.0])
    assert radius == pytest.approx(np.linalg.norm([0.0, 4.0, -4.0]))


@pytest.mark.slow
@needs_povray
def test_povray_cli_prints_framing_error_as_one_line(tmp_path):
    scene = tmp_path / "empty.pov"
    scene.write_text("plane { y, 0 pigment { rgb 0.5 } }\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nerf_loe.data_scripts.povray",
            "--scene",
            str(scene),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot frame the orbit around {scene}")
    assert lines[0].endswith("pass --render.look-at X Y Z and --render.radius R")
    assert not (tmp_path / "out").exists()  # nothing written before the framing is known


def test_povray_errors(tmp_path, monkeypatch):
    from nerf_loe.data import povray

    with pytest.raises(RendererError, match=r"scene file .*missing.pov not found"):
        povray.render_povray_scene(tmp_path / "missing.pov", tmp_path / "out", povray.PovrayConfig())
    scene = tmp_path / "ok.pov"
    scene.write_text("sphere { 0, 1 }\n")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RendererError, match=r"povray not found: install it with 'apt-get install povray"):
        povray.render_povray_scene(scene, tmp_path / "out", povray.PovrayConfig())


def test_generators_refuse_views_they_cannot_render_before_rendering():
    # without the checks POV-Ray failed on a width of 0 with a parse error of its camera line
    from nerf_loe.data.povray import PovrayConfig
    from nerf_loe.data.procedural import ProceduralSceneConfig

    for config in (PovrayConfig, ProceduralSceneConfig):
        with pytest.raises(ConfigError, match="image size 0x75: give a width and height of at least 1"):
            config(width=0, height=75)
        with pytest.raises(ConfigError, match="num-views 1: give at least 2"):
            config(num_views=1)
        with pytest.raises(ConfigError, match="fov-deg 180.0: give a field of view between 0 and 180"):
            config(fov_deg=180.0)
        assert config(width=1, height=1, num_views=2, fov_deg=179.0).num_views == 2


@needs_povray
def test_povray_parse_error_and_half_written_output(tmp_path):
    from nerf_loe.data.povray import PovrayConfig, render_povray_scene

    broken = tmp_path / "broken.pov"
    broken.write_text("sphere { <0, 0, 0>, 1 pigment { rgb 1 }\nbogus_keyword 3\n")
    with pytest.raises(RendererError, match=r"POV-Ray failed on .*broken.pov: .*(Parse Error|error)"):
        render_povray_scene(broken, tmp_path / "out", PovrayConfig(num_views=2, width=8, height=6))
    half = tmp_path / "half"
    (half / "images").mkdir(parents=True)
    (half / "images" / "r_000.png").write_bytes(b"")
    scene = tmp_path / "ok.pov"
    scene.write_text("sphere { 0, 1 pigment { rgb 1 } }\n")
    with pytest.raises(DatasetError, match=r"half-written dataset .*pass --resume"):
        render_povray_scene(scene, half, PovrayConfig(num_views=2, width=8, height=6))


def test_sparse_splits_are_deterministic_and_exclude_test_views(tiny_scene, tmp_path):
    for k in (3, 6, 9):
        for strategy in ("even", "farthest"):
            a = read_info(make_sparse(tiny_scene, tmp_path / f"a{k}{strategy}", k, strategy))["splits"]
            b = read_info(make_sparse(tiny_scene, tmp_path / f"b{k}{strategy}", k, strategy))["splits"]
            assert a == b and len(a["train"]) == k
            assert not set(a["train"]) & set(a["test"])
            assert all(i % 8 != 0 for i in a["train"]) and a["test"] == list(range(0, 24, 8))
    even = read_info(tmp_path / "a3even")["splits"]["train"]
    assert even == [1, 12, 23]  # first, middle and last of the 21 non-test views
    with pytest.raises(DatasetError, match="only 21 non-test views"):
        make_sparse(tiny_scene, tmp_path / "too_many", 30)


def test_sparse_dataset_loads_in_nerfstudio_without_copies(tiny_scene, tmp_path):
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    sparse = make_sparse(tiny_scene, tmp_path / "sparse3", 3)
    assert (sparse / "images").is_symlink()
    blender = BlenderDataParserConfig(data=sparse).setup().get_dataparser_outputs("train")
    assert len(blender.image_filenames) == 3
    ns = NerfstudioDataParserConfig(data=sparse).setup().get_dataparser_outputs("train")
    assert len(ns.image_filenames) == 3
    assert (
        len(NerfstudioDataParserConfig(data=sparse).setup().get_dataparser_outputs("test").image_filenames)
        == 3
    )


def test_full_dataset_loads_in_both_dataparsers(tiny_scene):
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    for split, n in (("train", 21), ("val", 3), ("test", 3)):
        assert (
            len(
                BlenderDataParserConfig(data=tiny_scene).setup().get_dataparser_outputs(split).image_filenames
            )
            == n
        )
        assert (
            len(
                NerfstudioDataParserConfig(data=tiny_scene)
                .setup()
                .get_dataparser_outputs(split)
                .image_filenames
            )
            == n
        )


def test_collection_index_and_variation(tmp_path):
    scene = ProceduralSceneConfig(width=16, height=16, num_views=8, supersample=1)
    out = make_collection(CollectionConfig(num_scenes=3, held_out=1, scene=scene), tmp_path / "coll", False)
    index = json.loads((out / "index.json").read_text())
    assert index["train"] == ["scene_000", "scene_001"] and index["held_out"] == ["scene_002"]
    seeds = {read_info(out / name)["config"]["seed"] for name in index["scenes"]}
    assert len(seeds) == 3
    from PIL import Image

    a = np.asarray(Image.open(out / "scene_000" / "images" / "r_000.png"))
    b = np.asarray(Image.open(out / "scene_001" / "images" / "r_000.png"))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0
