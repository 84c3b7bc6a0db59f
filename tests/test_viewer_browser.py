"""The nerfstudio viewer on a trained loe-nerf run, in a real browser (Debian's Chromium, driven by
Playwright; nothing is downloaded): ns-viewer serves it on 127.0.0.1, the page must show a render,
offer our outputs, change the picture when the output switches to the bank map, and draw the
occupancy grid's cells into the 3-D scene when its checkbox is ticked. The
screenshots are kept under ``tests/artifacts/`` (git-ignored)."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from test_end_to_end import BIN

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ns-viewer exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(1.0)
    pytest.fail(f"ns-viewer did not listen on port {port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _canvas(page) -> np.ndarray:
    """The 3-D view (viser's WebGL canvas) left of the control panel, which overlays the canvas
    (its tooltips and widgets would count as changes), as an RGB array."""
    from io import BytesIO

    from PIL import Image

    png = page.locator("canvas").first.screenshot()
    picture = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(np.float32)
    panel = page.get_by_text("Custom Elements").bounding_box()
    left = int(panel["x"]) - 24 if panel else picture.shape[1]
    return picture[:, :left]


def _wait_for_change(page, before: np.ndarray | None, timeout: float, min_std: float = 8.0) -> np.ndarray:
    """Poll the canvas until it shows structure (pixel spread above ``min_std``) and differs from
    ``before``; returns the last picture (the assertion is the caller's)."""
    deadline = time.monotonic() + timeout
    picture = _canvas(page)
    while time.monotonic() < deadline:
        picture = _canvas(page)
        changed = before is None or np.abs(picture - before).mean() > 2.0
        if picture.std() > min_std and changed:
            return picture
        time.sleep(1.0)
    return picture


def _output_options(page, wanted: set[str], timeout: float) -> list[str]:
    """Open the "Output type" dropdown and return its options once ``wanted`` are among them (or at
    ``timeout``): the viewer fills the list from the first render's outputs, and that message can
    reach the page after the render's picture. The dropdown is left open."""
    deadline = time.monotonic() + timeout
    while True:
        page.get_by_label("Output type").click()
        options = page.get_by_role("option").all_inner_texts()
        if wanted <= set(options) or time.monotonic() > deadline:
            return options
        page.keyboard.press("Escape")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def viewer_url(trained_run, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
    out = tmp_path_factory.mktemp("viewer_run")
    port = _free_port()
    log = out / "viewer.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                str(BIN / "ns-viewer"),
                "--load-config",
                str(trained_run),
                "--viewer.websocket-host",
                "127.0.0.1",
                "--viewer.websocket-port",
                str(port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_port(port, process, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.slow
def test_viewer_renders_offers_our_outputs_switches_to_the_bank_map_and_shows_the_grid(viewer_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        flags = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(viewer_url)
        page.wait_for_selector("canvas", timeout=120_000)
        rgb = _wait_for_change(page, None, timeout=180)
        page.screenshot(path=str(ARTIFACTS / "viewer_rgb.png"))
        assert rgb.std() > 8.0, "the render area stayed blank"

        wanted = {"rgb", "depth", "accumulation", "bank_map"}
        options = _output_options(page, wanted, timeout=60)
        assert wanted <= set(options), options
        page.get_by_role("option", name="bank_map", exact=True).click()
        bank_map = _wait_for_change(page, rgb, timeout=180)
        page.screenshot(path=str(ARTIFACTS / "viewer_bank_map.png"))
        assert np.abs(bank_map - rgb).mean() > 2.0, "switching to bank_map did not change the picture"

        # the render occludes scene objects behind its depth: the cells lie at and under surfaces
        page.get_by_label("Composite depth").uncheck()
        time.sleep(3.0)
        bank_map = _canvas(page)
        page.get_by_label("Show occupancy grid").check()
        grid = _wait_for_change(page, bank_map, timeout=180)
        page.screenshot(path=str(ARTIFACTS / "viewer_occupancy_grid.png"))
        browser.close()
    assert np.abs(grid - bank_map).mean() > 2.0, "showing the occupancy grid did not change the picture"
