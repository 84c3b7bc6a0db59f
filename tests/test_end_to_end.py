"""End to end, through the installed CLIs: ns-train -> checkpoint -> ns-eval -> resume -> ns-eval.

Parametrised over every method this distribution registers, on a tiny generated scene, CPU only,
no network. Asserts finite metrics, that resuming continues from the saved step, and that test
PSNR rises well above the first evaluation.
"""

import json
import math
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

BIN = Path(sys.executable).parent
METHODS = sorted(
    ep.name for ep in entry_points(group="nerfstudio.method_configs") if ep.value.startswith("nerf_loe.")
)
#: methods that train on one scene's data (the dictionary's two stages have their own test)
SINGLE_SCENE = [m for m in METHODS if not m.startswith("nid-")]
#: small dictionaries for the CPU
NID_OPTIONS = [
    "--pipeline.model.num-experts",
    "8",
    "--pipeline.model.top-k",
    "2",
    "--pipeline.model.hidden-dim",
    "32",
    "--pipeline.model.warmup-steps",
    "20",
]
FIRST_STEPS, MORE_STEPS = 10, 200


def release_banks_at(step: int) -> list[str]:
    """ns-train options that release loe-nerf's banks at ``step`` (its default, step 1000, lies past
    the tests' short runs)."""
    return ["--pipeline.model.residual-release-step", str(step)]


#: per-method options: loe-nerf releases its banks within the resumed run
OPTIONS = {"loe-nerf": release_banks_at(100)}


def run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def train(
    method: str,
    scene: Path,
    out: Path,
    timestamp: str,
    steps: int,
    load_dir: Path | None = None,
    dataparser: str = "blender-data",
    options: tuple[str, ...] | list[str] = (),
) -> str:
    cmd = [
        str(BIN / "ns-train"),
        method,
        "--vis",
        "tensorboard",
        "--output-dir",
        str(out),
        "--timestamp",
        timestamp,
        "--max-num-iterations",
        str(steps),
        "--steps-per-save",
        str(steps),
        "--steps-per-eval-batch",
        "100000",
        "--steps-per-eval-image",
        "100000",
        "--steps-per-eval-all-images",
        "100000",
        "--machine.device-type",
        "cpu",
        "--pipeline.datamanager.train-num-rays-per-batch",
        "512",
        "--pipeline.model.marcher.warmup-steps",
        "32",
    ]
    if load_dir is not None:
        cmd += ["--load-dir", str(load_dir)]
    return run([*cmd, *options, dataparser, "--data", str(scene)])


def evaluate(config: Path, output: Path) -> dict:
    run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(output)])
    return json.loads(output.read_text())


def test_every_method_is_registered():
    assert {"loe-nerf", "mlp-nerf", "partition-nerf", "asmr-nerf", "nid-dictionary", "nid-nerf"} <= set(
        METHODS
    )


def train_eval_resume(method, data, tmp_path, dataparser="blender-data", options=(), rise=3.0) -> Path:
    """Train, ns-eval, resume from the checkpoint, ns-eval again; PSNR must rise by ``rise`` dB.
    Returns the resumed run's last checkpoint."""
    run_dir = tmp_path / "unnamed" / method
    train(method, data, tmp_path, "first", FIRST_STEPS, dataparser=dataparser, options=options)
    first_ckpts = sorted((run_dir / "first" / "nerfstudio_models").glob("*.ckpt"))
    assert [c.name for c in first_ckpts] == [f"step-{FIRST_STEPS - 1:09d}.ckpt"]
    first = evaluate(run_dir / "first" / "config.yml", tmp_path / "first.json")["results"]
    assert math.isfinite(first["psnr"]) and math.isfinite(first["ssim"])

    log = train(
        method,
        data,
        tmp_path,
        "resumed",
        MORE_STEPS,
        first_ckpts[0].parent,
        dataparser=dataparser,
        options=options,
    )
    flat = "".join(log.split())  # rich wraps long paths
    assert "DoneloadingNerfstudiocheckpointfrom" in flat and first_ckpts[0].name in flat
    resumed_ckpts = sorted((run_dir / "resumed" / "nerfstudio_models").glob("*.ckpt"))
    assert resumed_ckpts[-1].name == f"step-{FIRST_STEPS + MORE_STEPS - 1:09d}.ckpt"
    last = evaluate(run_dir / "resumed" / "config.yml", tmp_path / "last.json")["results"]
    assert math.isfinite(last["psnr"]) and math.isfinite(last["ssim"])
    assert last["psnr"] > first["psnr"] + rise, (first["psnr"], last["psnr"])
    return resumed_ckpts[-1]


@pytest.mark.slow
@pytest.mark.parametrize("method", SINGLE_SCENE)
def test_train_eval_resume(method, tiny_scene, tmp_path):
    checkpoint = train_eval_resume(method, tiny_scene, tmp_path, options=OPTIONS.get(method, ()))
    if method == "loe-nerf":  # the resumed run released the banks, and they trained
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]
        assert bool(state["_model.field.trunk.mlp.released"])
        residuals = [
            v for k, v in state.items() if re.fullmatch(r"_model\.field\.trunk\.mlp\.layers\.\d+\.weight", k)
        ]
        assert len(residuals) == 4 and all(bool(r.abs().max() > 0) for r in residuals)


@pytest.mark.slow
def test_dictionary_then_a_held_out_scene_train_eval_resume(tmp_path):
    """nid-dictionary over a tiny mug collection, then nid-nerf on its held-out mug from that
    checkpoint, each through ns-train / ns-eval / resume."""
    from nerf_loe.data.collections import CollectionConfig, make_collection
    from nerf_loe.data.procedural import ProceduralSceneConfig

    scene = ProceduralSceneConfig(width=24, height=24, num_views=16, supersample=1, family="mug")
    mugs = make_collection(CollectionConfig(num_scenes=3, held_out=1, scene=scene), tmp_path / "mugs", False)
    checkpoint = train_eval_resume("nid-dictionary", mugs, tmp_path / "dict", "collection-data", NID_OPTIONS)
    fit_options = [*NID_OPTIONS, "--pipeline.model.dictionary", str(checkpoint)]
    fitted = train_eval_resume(
        "nid-nerf", mugs / "scene_002", tmp_path / "fit", options=fit_options, rise=1.0
    )

    # meshes: each scene of the dictionary (its code, its grid), and the fitted scene
    import open3d as o3d

    def export(checkpoint: Path, scene: int) -> np.ndarray:
        output = tmp_path / f"{checkpoint.parents[2].name}_{scene}.ply"
        config = checkpoint.parents[1] / "config.yml"
        run([str(BIN / "nerf-loe-export-mesh"), "--load-config", str(config), "--output", str(output),
             "--resolution", "48", "--level", "1", "--scene", str(scene)])  # fmt: skip
        return np.asarray(o3d.io.read_triangle_mesh(str(output)).vertices)

    meshes = [export(checkpoint, 0), export(checkpoint, 1), export(fitted, 0)]
    for vertices in meshes:
        assert len(vertices) > 100 and np.abs(vertices).max() <= 1.5 + 1e-4
    assert len(meshes[0]) != len(meshes[1])  # two scenes, two shapes


@pytest.mark.slow
def test_loe_nerf_trains_out_of_the_box_on_nerfstudio_data(tiny_scene, tmp_path):
    """The same scene through nerfstudio's own format and dataparser (the real-capture path)."""
    train("loe-nerf", tiny_scene, tmp_path, "ns", FIRST_STEPS, dataparser="nerfstudio-data")
    run_dir = tmp_path / "unnamed" / "loe-nerf" / "ns"
    assert (run_dir / "nerfstudio_models" / f"step-{FIRST_STEPS - 1:09d}.ckpt").is_file()
    metrics = evaluate(run_dir / "config.yml", tmp_path / "ns.json")["results"]
    assert math.isfinite(metrics["psnr"]) and metrics["psnr"] > 5.0
