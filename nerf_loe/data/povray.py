"""Render any POV-Ray scene into a dataset with exact, known cameras.

The scene's own camera is overridden by ours (POV-Ray uses the last camera declared), given
with explicit ``location/direction/right/up`` vectors so the projection is exactly pinhole.

Coordinates: POV-Ray is left-handed with +y up. Our dataset world is right-handed, +z up, centred
on the look-at point and scaled so cameras sit at ``dataset_radius`` (4, like Blender's synthetic
scenes, so nerfstudio's default scene boxes fit). ``world = S (pov - look_at) / scale`` where
``S`` swaps y and z (a reflection, which turns the left-handed frame into a right-handed one).
Cameras are OpenGL (look along -z), and a pixel at normalised ``(u, v)`` (v down) sees
``direction + (u - 1/2) right + (1/2 - v) up`` in POV-Ray, which we match to the pinhole model.

Framing: by default the orbit is centred on the scene's bounding box and sized so the box's
bounding sphere fills the view. POV-Ray reports no bounding boxes, so we measure one: three
low-resolution orthographic alpha renders along the axes (silhouettes) in a window around the
scene camera's look_at. Rows and columns covered edge to edge belong to infinite objects (floor
planes, sky spheres) and are ignored; what remains bounds the finite geometry. When neither the
config, the box nor the scene camera gives the orbit's centre or distance, framing fails with a
``RendererError`` asking for ``--render.look-at`` / ``--render.radius``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rich.progress import Progress

from nerf_loe.data.cameras import Placement, camera_poses, focal_from_fov
from nerf_loe.data.formats import (
    check_output_folder,
    check_views,
    default_splits,
    frame_name,
    write_transforms,
)
from nerf_loe.errors import RendererError

POV_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # swap y and z


@dataclass
class PovrayConfig:
    """POV-Ray scene -> dataset."""

    width: int = 100
    height: int = 75
    num_views: int = 60
    placement: Placement = "hemisphere"
    framing: Literal["bbox", "camera"] = "bbox"
    """Default orbit: ``bbox`` fits the scene's measured bounding box in view; ``camera`` reuses the
    scene camera's look_at and distance (better when a large object, e.g. a table, dwarfs the subject)."""
    radius: float | None = None
    """Camera distance in POV-Ray units; overrides the framing's."""
    look_at: tuple[float, float, float] | None = None
    """Orbit centre in POV-Ray coordinates; overrides the framing's."""
    fov_deg: float = 40.0
    antialias: float | None = 0.3
    """POV-Ray +A threshold; None disables anti-aliasing."""
    jobs: int = 0
    """Parallel POV-Ray processes; 0 = one per core."""
    resume: bool = False
    """Keep views already rendered in the output folder."""
    seed: int = 0
    dataset_radius: float = 4.0
    """Camera distance in the written dataset's world units."""

    def __post_init__(self) -> None:
        check_views(self.width, self.height, self.num_views, self.fov_deg)


def _find_povray() -> str:
    exe = shutil.which("povray")
    if exe is None:
        raise RendererError("povray not found: install it with 'apt-get install povray povray-examples'")
    return exe


def _vector(text: str) -> np.ndarray | None:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        return None
    return np.array(values) if len(values) == 3 else None


def strip_comments(text: str) -> str:
    """``text`` with POV-Ray comments blanked and string literals emptied (``"..."`` -> ``""``).

    ``//`` comments run to the end of the line; ``/* ... */`` comments nest (as in POV-Ray 3.7,
    only ``/*`` and ``*/`` count inside them). Each comment becomes one space, so it still
    separates the tokens around it.
    """
    out, i, n = [], 0, len(text)
    while i < n:
        pair = text[i : i + 2]
        if pair == "//":
            end = text.find("\n", i)
            i = n if end < 0 else end  # keep the newline
            out.append(" ")
        elif pair == "/*":
            depth, i = 1, i + 2
            while i < n and depth:
                pair = text[i : i + 2]
                if pair in ("/*", "*/"):
                    depth += 1 if pair == "/*" else -1
                    i += 2
                else:
                    i += 1
            out.append(" ")
        elif text[i] == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
            i += 1  # the closing quote
            out.append('""')
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` matching the ``{`` at ``start`` (the text's length if unbalanced)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text)


_CAMERA = re.compile(r"(?:#\s*(?:declare|local)\s+(\w+)\s*=\s*)?\bcamera\s*\{")
_CAMERA_ITEMS = {
    "location": re.compile(r"\blocation\s*<([^<>]*)>"),
    "look_at": re.compile(r"\blook_at\s*<([^<>]*)>"),
}


def scene_framing(scene: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The scene camera's location and look_at (POV-Ray units), when written as plain numbers.

    The scene camera is the last ``camera { ... }`` outside comments and strings that is not a
    ``#declare``/``#local`` (the last declared one if every camera is declared); ``camera {
    Name ... }`` starts from the declared camera ``Name``'s values.
    """
    text = strip_comments(scene.read_text(errors="replace"))
    declared: dict[str, dict[str, np.ndarray | None]] = {}
    cameras: list[dict[str, np.ndarray | None]] = []  # placed cameras, in order
    last_declared: dict[str, np.ndarray | None] | None = None
    for match in _CAMERA.finditer(text):
        body = text[match.end() : _closing_brace(text, match.end() - 1)]
        base = re.match(r"\s*([A-Za-z_]\w*)", body)
        values = dict(declared.get(base.group(1), {})) if base else {}
        for item, pattern in _CAMERA_ITEMS.items():
            found = pattern.search(body)
            if found:
                values[item] = _vector(found.group(1))
        if match.group(1):
            declared[match.group(1)] = last_declared = values
        else:
            cameras.append(values)
    camera = cameras[-1] if cameras else last_declared or {}
    return camera.get("location"), camera.get("look_at")


def _vec(v: np.ndarray) -> str:
    return "<" + ", ".join(f"{x:.9g}" for x in v) + ">"


def pov_camera(c2w_pov: np.ndarray, focal: float, width: int, height: int) -> str:
    """A POV-Ray camera block for an OpenGL camera-to-world pose expressed in POV-Ray axes."""
    right, up, back, eye = c2w_pov[:3, 0], c2w_pov[:3, 1], c2w_pov[:3, 2], c2w_pov[:3, 3]
    return (
        f"camera {{ perspective location {_vec(eye)} direction {_vec(-back)} "
        f"right {_vec(right * width / focal)} up {_vec(up * height / focal)} }}"
    )


def _parse_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "Parse Error" in line or "Possible Parse Error" in line:
            return " ".join(lines[max(i - 1, 0) : i + 1])
    return lines[-1] if lines else "no output"


def _run_povray(
    povray: str, scene: Path, camera: str, size: tuple[int, int], options: list[str], out: Path
) -> None:
    """Render ``scene`` through ``camera`` (a POV-Ray camera block) at ``size`` (w, h) into ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        wrapper, partial = Path(tmp) / "view.pov", Path(tmp) / "view.png"
        wrapper.write_text(f'#include "{scene.name}"\n{camera}\n')
        cmd = [povray, f"+I{wrapper}", f"+O{partial}", f"+L{scene.parent}", f"+W{size[0]}", f"+H{size[1]}"]
        cmd += ["+FN", "+UA", "-D", "+WT1", "-V", *options]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if result.returncode != 0 or not partial.is_file():
            raise RendererError(f"POV-Ray failed on {scene}: {_parse_error(result.stdout + result.stderr)}")
        shutil.move(partial, out)  # whole files only: an interrupted run leaves no broken image


def render_view(
    povray: str, scene: Path, c2w_pov: np.ndarray, focal: float, config: PovrayConfig, out: Path
) -> None:
    options = [f"+A{config.antialias}", "+AM2"] if config.antialias is not None else ["-A"]
    camera = pov_camera(c2w_pov, focal, config.width, config.height)
    _run_povray(povray, scene, camera, (config.width, config.height), options, out)


def scene_bounds(
    povray: str, scene: Path, centre: np.ndarray, half_size: float, resolution: int = 96
) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounding box (POV-Ray units) of the scene's finite geometry in a cube window, or None.

    Three orthographic silhouettes along x, y and z; in each, rows and columns covered from edge
    to edge (infinite planes, sky spheres) are dropped and the rest bounds the two in-image axes.
    Accurate to one probe pixel, ``2 half_size / resolution``, and clipped to the window.
    """
    from PIL import Image

    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    pixel, axes = 2 * half_size / resolution, np.eye(3)
    with tempfile.TemporaryDirectory() as tmp:
        for view, (a, b) in enumerate([(1, 2), (2, 0), (0, 1)]):  # image right along a, up along b
            eye = centre + 4 * half_size * axes[view]
            camera = (
                f"camera {{ orthographic location {_vec(eye)} direction {_vec(-axes[view])} "
                f"right {_vec(2 * half_size * axes[a])} up {_vec(2 * half_size * axes[b])} }}"
            )
            image = Path(tmp) / f"probe{view}.png"
            _run_povray(povray, scene, camera, (resolution, resolution), ["-A"], image)
            mask = np.asarray(Image.open(image))[..., 3] > 0
            mask &= ~mask.all(axis=1, keepdims=True) & ~mask.all(axis=0, keepdims=True)
            rows, cols = np.nonzero(mask)
            if rows.size == 0:
                continue
            # Column j covers right-coordinates centre - half + [j, j + 1] pixel; rows run down.
            lo[a] = min(lo[a], centre[a] - half_size + cols.min() * pixel)
            hi[a] = max(hi[a], centre[a] - half_size + (cols.max() + 1) * pixel)
            lo[b] = min(lo[b], centre[b] + half_size - (rows.max() + 1) * pixel)
            hi[b] = max(hi[b], centre[b] + half_size - rows.min() * pixel)
    return (lo, hi) if np.isfinite(lo).all() else None


def orbit_framing(povray: str, scene: Path, config: PovrayConfig, focal: float) -> tuple[np.ndarray, float]:
    """Orbit centre and camera distance (POV-Ray units): the config's, else the box's or camera's.

    Raises :class:`RendererError` when one is not in the config and the scene gives neither a
    parsable camera nor (for ``bbox`` framing) any finite geometry to measure.
    """
    if config.look_at is not None and config.radius is not None:
        return np.array(config.look_at, dtype=float), config.radius
    location, target = scene_framing(scene)
    given = np.array(config.look_at, dtype=float) if config.look_at is not None else None
    centre = target if target is not None else given  # the camera's distance is measured from here
    distance = (
        float(np.linalg.norm(location - centre)) if location is not None and centre is not None else None
    )
    if config.framing == "bbox":
        window = centre if centre is not None else np.zeros(3)
        if distance is not None:
            reach = distance
        elif location is not None:
            reach = float(np.linalg.norm(location - window))
        else:
            reach = config.radius if config.radius is not None else 10.0
        bounds = scene_bounds(povray, scene, window, half_size=1.5 * reach)
        if bounds is not None:
            lo, hi = bounds
            centre = (lo + hi) / 2
            half_fov = np.arctan(0.5 * min(config.width, config.height) / focal)
            distance = float(np.linalg.norm(hi - lo) / 2 / np.sin(half_fov))
    missing = [
        option
        for option, value, needed in (
            ("--render.look-at X Y Z", centre, config.look_at is None),
            ("--render.radius R", distance, config.radius is None),
        )
        if needed and value is None
    ]
    if missing:
        found = "its camera has no plain-number location and look_at"
        if config.framing == "bbox":
            found += " and the bounding-box probe found no finite geometry"
        raise RendererError(f"cannot frame the orbit around {scene}: {found}; pass {' and '.join(missing)}")
    look_at = given if given is not None else centre
    return look_at, config.radius if config.radius is not None else distance


def render_povray_scene(scene: Path, out_dir: Path, config: PovrayConfig, show_progress: bool = True) -> Path:
    """Render ``config.num_views`` views of ``scene`` into ``out_dir`` (Blender + nerfstudio formats)."""
    scene, out_dir = Path(scene).resolve(), Path(out_dir)
    if not scene.is_file():
        raise RendererError(
            f"scene file {scene} not found: pass a .pov file (examples: /usr/share/doc/povray/examples)"
        )
    povray = _find_povray()
    check_output_folder(out_dir, config.resume)
    focal = focal_from_fov(config.width, np.deg2rad(config.fov_deg))
    look_at, radius = orbit_framing(povray, scene, config, focal)  # before writing anything
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    scale = radius / config.dataset_radius
    poses = camera_poses(config.num_views, config.dataset_radius, np.zeros(3), config.placement, config.seed)

    def to_pov(c2w: np.ndarray) -> np.ndarray:
        pov = np.eye(4)
        pov[:3, :3] = POV_TO_WORLD @ c2w[:3, :3]
        pov[:3, 3] = POV_TO_WORLD @ (c2w[:3, 3] * scale) + look_at
        return pov

    todo = [i for i in range(config.num_views) if not (out_dir / "images" / f"{frame_name(i)}.png").is_file()]
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task(
            "POV-Ray views", total=config.num_views, completed=config.num_views - len(todo)
        )
        with ThreadPoolExecutor(max_workers=config.jobs or os.cpu_count() or 1) as pool:
            futures = [
                pool.submit(
                    render_view,
                    povray,
                    scene,
                    to_pov(poses[i]),
                    focal,
                    config,
                    out_dir / "images" / f"{frame_name(i)}.png",
                )
                for i in todo
            ]
            for future in futures:
                future.result()
                progress.advance(task)

    info = {
        "generator": "povray",
        "scene": str(scene),
        "width": config.width,
        "height": config.height,
        "fov_deg": config.fov_deg,
        "pov_look_at": look_at.tolist(),
        "pov_scale": scale,
        "world_from_pov": "world = S (pov - pov_look_at) / pov_scale, S swaps y and z",
    }
    write_transforms(
        out_dir, "images", poses, config.width, config.height, focal, default_splits(config.num_views), info
    )
    return out_dir


def pov_to_world(points: np.ndarray, look_at: np.ndarray, scale: float) -> np.ndarray:
    """Map POV-Ray points into the dataset's world frame (see module docstring)."""
    return (points - look_at) @ POV_TO_WORLD.T / scale
