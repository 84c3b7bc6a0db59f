"""Check a dataset before nerfstudio reads it, so bad input ends in one line that says what to fix.

nerfstudio's dataparsers fail deep inside (KeyError, FileNotFoundError, PIL errors); these checks
run first and raise :class:`~nerf_loe.errors.DatasetError` naming the file and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from PIL import Image

from nerf_loe.errors import DatasetError

_NERFSTUDIO_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path} not found: the dataset needs this transforms file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}): fix or regenerate it"
        ) from None


def _check_frames(
    path: Path,
    meta: dict[str, Any],
    image_path_of: Callable[[dict[str, Any]], Path],
    per_frame_keys: tuple[str, ...] = (),
    size_of: Callable[[dict[str, Any]], tuple[int, int]] | None = None,
) -> None:
    """Every frame's keys, pose and image; ``size_of(frame)``: the (width, height) its image must
    have (None: that of the first image: nerfstudio stacks the images of a split)."""
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: missing or empty 'frames' list: add one entry per image")
    first: tuple[tuple[int, int], Path] | None = None
    for i, frame in enumerate(frames):
        for key in ("file_path", "transform_matrix", *per_frame_keys):
            if key not in frame:
                raise DatasetError(f"{path}: frame {i} lacks '{key}': every frame needs it")
        matrix = frame["transform_matrix"]
        if len(matrix) not in (3, 4) or any(len(row) != 4 for row in matrix):
            raise DatasetError(f"{path}: frame {i} 'transform_matrix' must be 4x4 (or 3x4) camera-to-world")
        image = image_path_of(frame)
        if not image.is_file():
            raise DatasetError(
                f"{path}: frame {i} image {image} not found: fix its file_path or add the image"
            )
        try:
            with Image.open(image) as im:
                size = im.size
                im.verify()
        except Exception as exc:  # PIL raises many types for broken files
            raise DatasetError(
                f"{image} is unreadable ({type(exc).__name__}): replace or re-render it"
            ) from None
        first = first or (size, image)
        expected = size_of(frame) if size_of is not None else first[0]
        if tuple(size) != tuple(expected):
            said = (
                f"{path} gives {expected[0]}x{expected[1]} (w, h): resize the image or fix its intrinsics"
                if size_of is not None
                else f"the split's first image, {first[1].name}, is {expected[0]}x{expected[1]}: "
                "the images of a split must have one size"
            )
            raise DatasetError(f"{image} is {size[0]}x{size[1]} but {said}")


def _validate_blender(data: Path, splits: tuple[str, ...]) -> None:
    for split in splits:
        path = data / f"transforms_{split}.json"
        meta = _load_json(path)
        if "camera_angle_x" not in meta:
            raise DatasetError(f"{path}: missing 'camera_angle_x' (horizontal field of view in radians)")
        _check_frames(path, meta, lambda f: data / (f["file_path"].replace("./", "") + ".png"))


def _check_split_lists(path: Path, meta: dict[str, Any], eval_split: str) -> None:
    """nerfstudio's split lists (``train_filenames``, ``val_filenames``, ``test_filenames``), where
    any is given: the splits read must be listed, not empty, and name only frames' images (else
    nerfstudio stops with a traceback, or trains on nothing)."""
    if not any(f"{split}_filenames" in meta for split in ("train", "val", "test")):
        return
    images = {os.path.normpath(frame["file_path"]) for frame in meta["frames"]}
    for split in ("train", eval_split):
        listed = meta.get(f"{split}_filenames")
        if not isinstance(listed, list) or not listed:
            raise DatasetError(
                f"{path}: '{split}_filenames' is missing or empty while other split lists are given: "
                f"list the {split} images, or remove every *_filenames list to split by interval"
            )
        unknown = [name for name in listed if os.path.normpath(name) not in images]
        if unknown:
            raise DatasetError(
                f"{path}: '{split}_filenames' names {len(unknown)} image(s) no frame has "
                f"(e.g. {unknown[0]}): remove them from the list or add their frames"
            )


def _validate_nerfstudio(data: Path, eval_split: str) -> None:
    path = data if data.suffix == ".json" else data / "transforms.json"
    root = path.parent
    meta = _load_json(path)
    missing = [k for k in _NERFSTUDIO_INTRINSICS if k not in meta]
    _check_frames(
        path,
        meta,
        lambda f: root / f["file_path"],
        per_frame_keys=tuple(missing),
        size_of=lambda f: (int(f.get("w", meta.get("w"))), int(f.get("h", meta.get("h")))),
    )
    _check_split_lists(path, meta, eval_split)


def validate_dataset(config: DataParserConfig, test_mode: str = "val") -> None:
    """Validate the data a dataparser config points at, for training (val) or ns-eval (test)."""
    data = Path(getattr(config, "data", Path()))
    if not data.exists() and test_mode in ("test", "inference"):  # ns-eval, ns-render, the viewer
        raise DatasetError(
            f"data folder {data} of this run does not exist: put the dataset back there, or point "
            "'data' in the run's config.yml at it (paths relative to where ns-train ran)"
        )
    if not data.exists():
        raise DatasetError(
            f"data folder {data} does not exist: pass --data <dataset folder> "
            "(make one with nerf-loe-procedural or nerf-loe-povray)"
        )
    eval_split = "test" if test_mode in ("test", "inference") else "val"  # the datamanager's rule
    if isinstance(config, BlenderDataParserConfig):
        _validate_blender(data, ("train", eval_split))
    elif isinstance(config, NerfstudioDataParserConfig):
        _validate_nerfstudio(data, eval_split)
