"""The README demo: render the default POV-Ray scene once, train loe-nerf on it, evaluate it, and
show it: a turntable video (ns-render along :mod:`nerf_loe.inspection.orbit`'s path) and a
coloured density mesh (:mod:`nerf_loe.inspection.export_mesh`).

Everything is cached under ``data/``: the scene is rendered once (chess2 at 100x75, 60 views; the
procedural scene when POV-Ray is missing), training is skipped when its checkpoint exists and each
output when its file exists, so a second run prints the stored result in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from nerf_loe.data.formats import MARKER
from nerf_loe.data.povray import PovrayConfig, render_povray_scene
from nerf_loe.data.procedural import ProceduralSceneConfig, generate_procedural
from nerf_loe.errors import install_excepthook
from nerf_loe.inspection.export_mesh import ExportMesh, export
from nerf_loe.inspection.orbit import OrbitPath, write_orbit

CHESS2 = Path("/usr/share/doc/povray/examples/advanced/chess2.pov")


@dataclass
class DemoArgs:
    data: Path = Path("data")
    """Cache folder for the scene and the run."""
    method: str = "loe-nerf"
    steps: int = 2000
    """Training steps: loe-nerf's banks act from step 1000 on (before it the trunk is its MLP)."""
    rays_per_batch: int = 1024
    turntable_frames: int = 60
    mesh_resolution: int = 160


def default_scene(data: Path, width: int = 100, height: int = 75, num_views: int = 60) -> Path:
    """The demo scene, rendered once into ``data`` (also the benchmarks' scene).

    chess2 is framed by its own camera: its measured bounding box includes a tall table pedestal,
    and an orbit fitted to it would leave the pieces a few pixels tall.
    """
    size = f"{width}x{height}"
    if shutil.which("povray") and CHESS2.is_file():
        out = data / f"chess2-{size}"
        if not (out / MARKER).is_file():
            config = PovrayConfig(
                width=width, height=height, num_views=num_views, framing="camera", resume=True
            )
            render_povray_scene(CHESS2, out, config)
        return out
    print("POV-Ray not available: using the procedural scene (apt-get install povray povray-examples)")
    out = data / f"procedural-{size}"
    if not (out / MARKER).is_file():
        generate_procedural(ProceduralSceneConfig(width=width, height=height, num_views=num_views), out)
    return out


def main() -> None:
    install_excepthook()
    args = tyro.cli(DemoArgs)
    scene = default_scene(args.data)
    bin_dir = Path(sys.executable).parent
    run_dir = args.data / "runs" / scene.name / args.method / "demo"
    result = run_dir / "eval.json"
    if not result.is_file():
        checkpoints = run_dir / "nerfstudio_models"
        subprocess.run(
            [
                str(bin_dir / "ns-train"),
                args.method,
                "--vis",
                "tensorboard",
                "--output-dir",
                str(args.data / "runs"),
                "--experiment-name",
                scene.name,
                "--timestamp",
                "demo",
                "--max-num-iterations",
                str(args.steps),
                "--pipeline.datamanager.train-num-rays-per-batch",
                str(args.rays_per_batch),
                *(["--load-dir", str(checkpoints)] if any(checkpoints.glob("*.ckpt")) else []),
                "blender-data",
                "--data",
                str(scene),
            ],
            check=True,
        )
        subprocess.run(
            [
                str(bin_dir / "ns-eval"),
                "--load-config",
                str(run_dir / "config.yml"),
                "--output-path",
                str(result),
            ],
            check=True,
        )
    config = run_dir / "config.yml"
    video, mesh = run_dir / "turntable.mp4", run_dir / "mesh.ply"
    if not video.is_file():
        path = write_orbit(OrbitPath(config, run_dir / "orbit.json", frames=args.turntable_frames))
        subprocess.run(
            [
                str(bin_dir / "ns-render"),
                "camera-path",
                "--load-config",
                str(config),
                "--camera-path-filename",
                str(path),
                "--output-path",
                str(video),
            ],
            check=True,
        )
    if not mesh.is_file():
        export(ExportMesh(config, mesh, resolution=args.mesh_resolution))
    metrics = json.loads(result.read_text())["results"]
    print(f"{args.method} on {scene.name}: test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}")
    print(f"turntable: {video}; mesh: {mesh}")
    print(f"run: {run_dir} (view with: ns-viewer --load-config {config})")


if __name__ == "__main__":
    main()
