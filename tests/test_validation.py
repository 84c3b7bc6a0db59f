"""Bad datasets end in one line that names the file and says what to fix."""

import json
import shutil
import subprocess
import sys

import pytest
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from PIL import Image

from nerf_loe.data.datamanager import ValidatedDataManagerConfig
from nerf_loe.data.validation import validate_dataset
from nerf_loe.errors import DatasetError


@pytest.fixture
def scene_copy(tiny_scene, tmp_path):
    return shutil.copytree(tiny_scene, tmp_path / "scene")


def test_valid_scene_passes_both_formats(tiny_scene):
    validate_dataset(BlenderDataParserConfig(data=tiny_scene))
    validate_dataset(NerfstudioDataParserConfig(data=tiny_scene))


def test_missing_data_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"nope does not exist: pass --data"):
        validate_dataset(BlenderDataParserConfig(data=tmp_path / "nope"))
    # ns-eval and ns-render take no --data: the run's config names the folder
    for mode in ("test", "inference"):
        with pytest.raises(DatasetError, match=r"nope of this run does not exist: put the dataset back"):
            validate_dataset(NerfstudioDataParserConfig(data=tmp_path / "nope"), test_mode=mode)


def test_the_datamanagers_data_option_is_the_folder_checked(tmp_path, monkeypatch):
    # `ns-train <method> --data X` sets the datamanager's data, which nerfstudio hands to the
    # dataparser only inside VanillaDataManager; the check must read X, not the dataparser's default
    monkeypatch.chdir(tmp_path)
    config = ValidatedDataManagerConfig(data=tmp_path / "nope", dataparser=NerfstudioDataParserConfig())
    with pytest.raises(DatasetError, match=r"data folder \S*nope does not exist: pass --data"):
        config.setup()


def test_transforms_missing_required_field(scene_copy):
    path = scene_copy / "transforms_train.json"
    meta = json.loads(path.read_text())
    del meta["camera_angle_x"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"transforms_train.json: missing 'camera_angle_x'"):
        validate_dataset(BlenderDataParserConfig(data=scene_copy))
    meta = json.loads((scene_copy / "transforms.json").read_text())
    del meta["fl_x"]
    (scene_copy / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"transforms.json: frame 0 lacks 'fl_x'"):
        validate_dataset(NerfstudioDataParserConfig(data=scene_copy))


def test_split_lists_must_name_frames_and_cover_the_splits_read(scene_copy):
    path = scene_copy / "transforms.json"
    meta = json.loads(path.read_text())
    assert meta["train_filenames"] and meta["val_filenames"] and meta["test_filenames"]
    kept = meta["frames"][:1]  # a user trims the frames but not the lists
    dropped = [f["file_path"] for f in meta["frames"][1:]]
    path.write_text(json.dumps({**meta, "frames": kept}))
    first_unknown = next(name for name in meta["train_filenames"] if name in dropped)
    message = (
        rf"'train_filenames' names {sum(n in dropped for n in meta['train_filenames'])} image\(s\) no frame "
    )
    with pytest.raises(DatasetError, match=message + rf"has \(e.g. {first_unknown}\)"):
        validate_dataset(NerfstudioDataParserConfig(data=scene_copy))
    # "./" prefixes name the same file; a missing list of a split that is read is refused
    path.write_text(json.dumps({**meta, "train_filenames": ["./" + n for n in meta["train_filenames"]]}))
    validate_dataset(NerfstudioDataParserConfig(data=scene_copy))
    without_test = {k: v for k, v in meta.items() if k != "test_filenames"}
    path.write_text(json.dumps(without_test))
    validate_dataset(NerfstudioDataParserConfig(data=scene_copy))  # training reads train and val
    with pytest.raises(DatasetError, match="'test_filenames' is missing or empty"):
        validate_dataset(NerfstudioDataParserConfig(data=scene_copy), test_mode="test")
    path.write_text(json.dumps({k: v for k, v in meta.items() if not k.endswith("_filenames")}))
    validate_dataset(NerfstudioDataParserConfig(data=scene_copy), test_mode="test")  # split by interval


def test_an_image_of_another_size_is_named_with_the_size_expected(scene_copy):
    # nerfstudio stacks a split's images: one of another size ended in torch.stack's traceback
    odd = scene_copy / "images" / "r_002.png"
    with Image.open(odd) as im:
        width, height = im.size
        im.resize((width // 2, height // 2)).save(odd)
    expected = rf"transforms.json gives {width}x{height} \(w, h\): resize the image or fix its intrinsics"
    with pytest.raises(DatasetError, match=rf"r_002.png is {width // 2}x{height // 2} but .*{expected}"):
        validate_dataset(NerfstudioDataParserConfig(data=scene_copy))
    first = json.loads((scene_copy / "transforms_train.json").read_text())["frames"][0]["file_path"]
    first = first.split("/")[-1] + ".png"
    assert first != "r_002.png"
    with pytest.raises(DatasetError, match=rf"r_002.png is .* but the split's first image, {first}, is "):
        validate_dataset(BlenderDataParserConfig(data=scene_copy))


def test_missing_and_unreadable_images(scene_copy):
    (scene_copy / "images" / "r_001.png").unlink()
    with pytest.raises(DatasetError, match=r"image .*r_001.png not found: fix its file_path"):
        validate_dataset(BlenderDataParserConfig(data=scene_copy))
    (scene_copy / "images" / "r_001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"r_001.png is unreadable .*: replace or re-render"):
        validate_dataset(NerfstudioDataParserConfig(data=scene_copy))


@pytest.mark.slow
def test_cli_prints_one_line_errors(tmp_path, tiny_scene):
    ns_train = [sys.executable, "-m", "nerfstudio.scripts.train"]
    missing = subprocess.run(
        [
            *ns_train,
            "loe-nerf",
            "--vis",
            "tensorboard",
            "--output-dir",
            str(tmp_path),
            "blender-data",
            "--data",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: data folder {tmp_path / 'nope'} does not exist")
    )
    bad_option = subprocess.run(
        [*ns_train, "loe-nerf", "--pipeline.model.banks", "4x4", "blender-data", "--data", str(tiny_scene)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = bad_option.stdout + bad_option.stderr
    assert bad_option.returncode != 0 or "Error parsing" in output
    assert "Traceback" not in output
    flat = " ".join(output.replace("│", " ").split())  # tyro wraps its message in a box
    assert "--pipeline.model.banks 4x4: give one 4x4x4" in flat
