"""The page in a real browser: Debian's Chromium, headless, driven by Playwright.

Loads the page served on localhost, uploads a video and a mask (and, in another test, draws the
mask on a frame), runs, waits for the result video and saves screenshots under
$TEST_ARTIFACTS_DIR (default: test-artifacts/). Playwright never downloads a browser here: it is
pointed at the system Chromium (`apt-get install chromium`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffueraser.app import Limits
from test_app import example_set, gallery, serve

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", "test-artifacts"))
# Small runs: the page's defaults follow the server's limits, so the browser needs to set nothing.
LIMITS = Limits(max_seconds=1, max_size=256, max_video_seconds=10, max_upload_mb=20)
RESULT_TIMEOUT_MS = 180_000  # a 2-core CI machine shared with other jobs
UI_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 1700}


def _browser_or_reason():
    """(playwright module, None) or (None, why the browser cannot run)."""
    if not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM):
        return None, f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright import sync_api
    except ImportError:
        return None, "the playwright package is not installed (pip install playwright)"
    return sync_api, None


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    examples = example_set(tmp_path_factory)
    demo, url = serve(gallery(examples), LIMITS)
    try:
        yield url, examples
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    sync_api, reason = _browser_or_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, page_url, tmp_path):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(page_url[0])
    page.wait_for_selector("#input-video input[type=file]", state="attached")
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def upload_video(page, path: Path) -> None:
    page.locator("#input-video input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#input-video video")


def wait_for_result(page) -> str:
    """The src of the result video once it is shown, and the summary line under it."""
    page.wait_for_selector("#result-video video[src]", timeout=RESULT_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#summary').innerText.includes('frames at')")
    return page.locator("#summary").inner_text()


def test_upload_a_video_and_a_mask_run_and_see_the_result(page, page_url):
    ex = page_url[1]["bikes_ball"]
    upload_video(page, ex.video)
    page.locator("#mask-file input[type=file]").set_input_files(str(ex.mask))
    page.click("#erase-button")

    summary = wait_for_result(page)

    assert "25 frames at 432×184" in summary and "propagation" in summary
    for output in ("#prior-video", "#comparison-video"):
        assert page.locator(f"{output} video[src]").count() == 1
    listed = page.locator("#downloads").inner_text()  # names show as stem and extension apart
    assert all(name in listed for name in ("result", "prior", "before_after", "mask"))
    src = page.locator("#result-video video").get_attribute("src")
    playable = page.evaluate("(src) => fetch(src).then(r => r.ok && r.headers.get('content-type'))", src)
    assert playable and "mp4" in playable
    assert screenshot(page, "upload_result").stat().st_size > 0


def test_a_bad_mask_shows_its_message_and_the_page_keeps_working(page, page_url, tmp_path):
    ex = page_url[1]["bikes_ball"]
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((184, 432), np.uint8))
    upload_video(page, ex.video)
    page.locator("#mask-file input[type=file]").set_input_files(str(black))
    page.click("#erase-button")

    page.get_by_text("the mask is empty").first.wait_for()  # the error toast
    screenshot(page, "bad_mask_message", full_page=False)  # toasts float over the visible part
    assert page.get_by_text("Traceback").count() == 0

    page.locator("#mask-file button[aria-label='Clear']").first.click()
    page.locator("#mask-file input[type=file]").set_input_files(str(ex.mask))
    page.click("#erase-button")
    assert "25 frames at 432×184" in wait_for_result(page)


def test_draw_the_mask_on_a_frame_and_run(page, page_url):
    ex = page_url[1]["bikes_ball"]
    upload_video(page, ex.video)
    page.get_by_role("tab", name="Draw on a frame").click()
    canvas = page.locator("#sketch canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1000)  # the frame is drawn into the canvas
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 50, y)
    page.mouse.down()
    for step in range(1, 3):  # few points: each one is slow to paint in software-rendered Chromium
        page.mouse.move(x - 50 + 50 * step, y + 5 * (step % 2))
    page.mouse.up()
    screenshot(page, "drawn_mask")
    page.click("#erase-button")

    summary = wait_for_result(page)

    assert "25 frames at 432×184" in summary
    page.get_by_role("tab", name="Mask file").click()
    assert "drawn_mask" in page.locator("#mask-file").inner_text()  # the drawing became the mask file
    screenshot(page, "drawn_result")


def test_an_example_is_one_click_from_a_result(page, page_url):
    page.get_by_text("Remove a watermark (mask image)").click()

    summary = wait_for_result(page)

    assert "25 frames at 416×234" in summary
    assert "bunny_watermark_mask" in page.locator("#mask-file").inner_text()
    screenshot(page, "example_result")
