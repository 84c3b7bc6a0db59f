"""Sparse-view splits of a full dataset (RegNeRF/FreeNeRF protocol), without copying images.

Test views are every 8th view of the source (as in the source's own split); ``k`` training views
are spread evenly over the remaining views, or chosen by farthest-point sampling of the camera
centres. The new dataset links to the source's images (a relative symlink) and records the split.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np

from nerf_loe.data.formats import MARKER, TEST_EVERY, read_info, write_transforms
from nerf_loe.errors import DatasetError

Strategy = Literal["even", "farthest"]


def choose_views(
    candidates: list[int], centres: np.ndarray, k: int, strategy: Strategy = "even"
) -> list[int]:
    """``k`` of ``candidates`` (indices into ``centres``), deterministic."""
    if k > len(candidates):
        raise DatasetError(f"asked for {k} training views but only {len(candidates)} non-test views exist")
    if strategy == "even":
        picks = np.round(np.linspace(0, len(candidates) - 1, k)).astype(int)
        return [candidates[i] for i in picks]
    chosen = [candidates[0]]
    dist = np.linalg.norm(centres[candidates] - centres[chosen[0]], axis=-1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(candidates[nxt])
        dist = np.minimum(dist, np.linalg.norm(centres[candidates] - centres[candidates[nxt]], axis=-1))
    return sorted(chosen)


def make_sparse(source: Path, out_dir: Path, k: int, strategy: Strategy = "even") -> Path:
    """Write a ``k``-view training split of ``source`` (a dataset made by this package)."""
    source, out_dir = Path(source).resolve(), Path(out_dir)
    if not (source / MARKER).is_file():
        raise DatasetError(f"{source} has no {MARKER}: make it with nerf-loe-procedural or nerf-loe-povray")
    meta = json.loads((source / "transforms.json").read_text())
    poses = np.array([f["transform_matrix"] for f in meta["frames"]])
    n = len(poses)
    test = [i for i in range(n) if i % TEST_EVERY == 0]
    candidates = [i for i in range(n) if i % TEST_EVERY != 0]
    train = choose_views(candidates, poses[:, :3, 3], k, strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    link = out_dir / "images"
    if not link.exists():
        os.symlink(os.path.relpath(source / "images", out_dir), link)
    info = {
        "generator": "sparse",
        "source": str(source),
        "k": k,
        "strategy": strategy,
        "source_info": read_info(source),
    }
    write_transforms(
        out_dir,
        "images",
        poses,
        int(meta["w"]),
        int(meta["h"]),
        float(meta["fl_x"]),
        {"train": train, "val": test, "test": test},
        info,
    )
    return out_dir
