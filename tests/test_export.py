"""Exports and renders of a trained model: the density mesh (this package's exporter) and
nerfstudio's point cloud against the tiny scene's true surfaces; ns-render videos (interpolated,
spiral, and this package's orbit) with the frame counts asked for."""

import json
import subprocess

import numpy as np
import pytest
from conftest import TINY_SCENE
from test_end_to_end import BIN, run

from nerf_loe.data.procedural import ProceduralRenderer, make_objects


def _truth() -> ProceduralRenderer:
    return ProceduralRenderer(make_objects(TINY_SCENE))


def _vertices(path) -> np.ndarray:
    import open3d as o3d

    return np.asarray(o3d.io.read_triangle_mesh(str(path)).vertices)


@pytest.mark.slow
def test_density_mesh_lies_on_the_true_surfaces(trained_run, tmp_path):
    output = tmp_path / "mesh.ply"
    run(
        [
            str(BIN / "nerf-loe-export-mesh"),
            "--load-config",
            str(trained_run),
            "--output",
            str(output),
            "--resolution",
            "96",
        ]
    )
    vertices = _vertices(output)
    assert len(vertices) > 500
    assert np.abs(vertices).max() <= 1.5 + 1e-4  # the scene box
    distance = _truth().distance(vertices)
    # objects span ~0.5-0.9 units; a 96^3 lattice of the 3-unit box has 0.03-unit cells
    assert np.median(distance) < 0.06 and np.quantile(distance, 0.9) < 0.2, np.quantile(distance, [0.5, 0.9])


@pytest.mark.slow
def test_mesh_export_names_a_bad_level_in_one_line(trained_run, tmp_path):
    result = subprocess.run(
        [
            str(BIN / "nerf-loe-export-mesh"),
            "--load-config",
            str(trained_run),
            "--output",
            str(tmp_path / "m.ply"),
            "--resolution",
            "16",
            "--level",
            "1e9",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0 and "--level 1e+09: the density inside the box spans" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_nerfstudio_point_cloud_export_lies_on_the_true_surfaces(trained_run, tmp_path):
    run(
        [
            str(BIN / "ns-export"),
            "pointcloud",
            "--load-config",
            str(trained_run),
            "--output-dir",
            str(tmp_path),
            "--num-points",
            "2000",
            "--remove-outliers",
            "True",
            "--normal-method",
            "open3d",
            "--save-world-frame",
            "True",
        ]
    )
    import open3d as o3d

    points = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "point_cloud.ply")).points)
    assert len(points) > 1000
    distance = _truth().distance(points)
    assert np.median(distance) < 0.08, np.quantile(distance, [0.5, 0.9])


def _frames(video) -> int:
    """Frames in a video, decoded and counted by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(video)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


@pytest.mark.slow
def test_ns_render_writes_videos_with_the_frames_asked_for(trained_run, tiny_scene, tmp_path):
    common = ["--load-config", str(trained_run), "--rendered-output-names", "rgb", "bank_map"]
    orbit = tmp_path / "orbit.json"
    run([str(BIN / "nerf-loe-orbit"), "--load-config", str(trained_run), "--output", str(orbit),
         "--frames", "6"])  # fmt: skip
    assert len(json.loads(orbit.read_text())["camera_path"]) == 6
    run([str(BIN / "ns-render"), "camera-path", *common, "--camera-path-filename", str(orbit),
         "--output-path", str(tmp_path / "orbit.mp4")])  # fmt: skip
    assert _frames(tmp_path / "orbit.mp4") == 6
    run([str(BIN / "ns-render"), "spiral", *common, "--seconds", "1", "--frame-rate", "5",
         "--output-path", str(tmp_path / "spiral.mp4")])  # fmt: skip
    assert _frames(tmp_path / "spiral.mp4") == 5
    run([str(BIN / "ns-render"), "interpolate", *common, "--interpolation-steps", "2", "--frame-rate", "4",
         "--output-path", str(tmp_path / "interpolate.mp4")])  # fmt: skip
    test_views = len(json.loads((tiny_scene / "transforms_test.json").read_text())["frames"])
    assert _frames(tmp_path / "interpolate.mp4") == 2 * (test_views - 1)  # steps per pair of test views
