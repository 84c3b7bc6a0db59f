"""Write datasets that nerfstudio loads unchanged, in Blender and nerfstudio formats at once.

Layout of a dataset folder::

    images/r_000.png ...          frames: RGBA (alpha = coverage) or RGB (opaque backdrop)
    transforms_{train,val,test}.json   Blender format (camera_angle_x, file_path without .png)
    transforms.json               nerfstudio format (fl_x, fl_y, cx, cy, w, h, *_filenames splits)
    dataset.json                  what made it (generator, options, splits)

Splits follow the RegNeRF/FreeNeRF protocol: test = every 8th view; val = the test views.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nerf_loe.errors import ConfigError

TEST_EVERY = 8
MARKER = "dataset.json"


def check_views(width: int, height: int, num_views: int, fov_deg: float) -> None:
    """A generator's image size, view count and field of view, checked before any rendering: at
    least one pixel, two views (view 0 is a test view, the next a training view), a field of view
    strictly between 0 and 180 degrees."""
    if width < 1 or height < 1:
        raise ConfigError(f"image size {width}x{height}: give a width and height of at least 1")
    if num_views < 2:
        raise ConfigError(
            f"num-views {num_views}: give at least 2 (every {TEST_EVERY}th view is a test view)"
        )
    if not 0.0 < fov_deg < 180.0:
        raise ConfigError(f"fov-deg {fov_deg}: give a field of view between 0 and 180 degrees")


def default_splits(n_views: int) -> dict[str, list[int]]:
    test = [i for i in range(n_views) if i % TEST_EVERY == 0]
    train = [i for i in range(n_views) if i % TEST_EVERY != 0]
    return {"train": train, "val": list(test), "test": test}


def frame_name(i: int) -> str:
    return f"r_{i:03d}"


def write_transforms(
    out_dir: Path,
    image_dir: str,
    poses: np.ndarray,
    width: int,
    height: int,
    focal: float,
    splits: dict[str, list[int]],
    info: dict[str, Any],
) -> None:
    """Write both formats for images ``{image_dir}/r_XXX.png`` (relative to ``out_dir``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fov_x = 2 * math.atan(0.5 * width / focal)
    for split, ids in splits.items():
        frames = [
            {"file_path": f"./{image_dir}/{frame_name(i)}", "transform_matrix": poses[i].tolist()}
            for i in ids
        ]
        (out_dir / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": fov_x, "frames": frames}, indent=1)
        )
    used = sorted({i for ids in splits.values() for i in ids})
    meta = {
        "camera_model": "OPENCV",
        "fl_x": focal,
        "fl_y": focal,
        "cx": width / 2,
        "cy": height / 2,
        "w": width,
        "h": height,
        "frames": [
            {"file_path": f"{image_dir}/{frame_name(i)}.png", "transform_matrix": poses[i].tolist()}
            for i in used
        ],
    }
    for split, ids in splits.items():
        meta[f"{split}_filenames"] = [f"{image_dir}/{frame_name(i)}.png" for i in ids]
    (out_dir / "transforms.json").write_text(json.dumps(meta, indent=1))
    (out_dir / MARKER).write_text(json.dumps({**info, "splits": splits}, indent=1))


def read_info(dataset: Path) -> dict[str, Any]:
    return json.loads((dataset / MARKER).read_text())


def dataset_family(dataset: Path) -> str | None:
    """The object family a dataset of this package shows (a procedural family scene, or a sparse
    split of one), None when unknown (other generators, other people's data)."""
    folder = Path(dataset).parent if Path(dataset).is_file() else Path(dataset)  # or its transforms.json
    if not (folder / MARKER).is_file():
        return None
    info = read_info(folder)
    while info.get("generator") == "sparse":
        info = info.get("source_info", {})
    return (info.get("config") or {}).get("family")


def check_output_folder(out_dir: Path, resume: bool) -> None:
    """Refuse to write into a half-written dataset unless resuming.

    A dataset is complete once its ``dataset.json`` exists (written last); images without it
    mean an interrupted run.
    """
    from nerf_loe.errors import DatasetError

    images = sorted((out_dir / "images").glob("r_*.png")) if (out_dir / "images").is_dir() else []
    if images and not (out_dir / MARKER).exists() and not resume:
        raise DatasetError(
            f"{out_dir} holds a half-written dataset ({len(images)} images, no {MARKER}): "
            "pass --resume to finish it or choose an empty folder"
        )
