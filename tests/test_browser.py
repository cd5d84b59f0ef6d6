"""The page in a real browser: Debian's Chromium, headless, driven by Playwright.

What a first-time visitor does: the first screen at 1366x768 holds the video input, the mask
source and the Erase button; an example is one click from a result; the expected time shows
before a run; Stop ends a running job and the next one completes; a phone (390x844) gets the
columns stacked and a frame to draw on that fits its width. Screenshots of both sizes go to
$TEST_ARTIFACTS_DIR (default: test-artifacts/). Playwright never downloads a browser here: it is
pointed at the system Chromium (`apt-get install chromium`).
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffueraser import media
from diffueraser.app import Limits, jobs
from diffueraser.progress import PRIOR, Progress
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
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
SLOW_JOB_S = 60.0  # the job Stop interrupts would run this long
SLOW_REPORT_S = 0.5  # each report redraws the progress bar: not more often than a real job's


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


def open_page(browser, url: str, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#input-video input[type=file]", state="attached")
    page.wait_for_selector("#erase-button")
    return context, page


@pytest.fixture
def page(browser, page_url):
    context, page = open_page(browser, page_url[0], DESKTOP)
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def upload_video(page, path: Path) -> None:
    page.locator("#input-video input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#input-video video")


def choose_source(page, label: str) -> None:
    page.locator("#mask-source").get_by_text(label, exact=True).click()


def wait_for_result(page, timeout: int = RESULT_TIMEOUT_MS) -> str:
    """The summary line once the result video is shown."""
    page.wait_for_selector("#result-video video[src]", timeout=timeout)
    page.wait_for_function("document.querySelector('#summary').innerText.includes('frames at')", timeout=timeout)
    return page.locator("#summary").inner_text()


def sketch_canvas(page):
    """The drawing canvas with its frame loaded, scrolled into view (the mouse only reaches what is shown)."""
    canvas = page.locator("#sketch canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1000)  # the frame is drawn into the canvas
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    return canvas.bounding_box()


def draw_stroke(page, box: dict, points: int = 3) -> None:
    """A short horizontal stroke through the middle of `box` (few points: each is slow to paint in
    software-rendered Chromium)."""
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 50, y)
    page.mouse.down()
    for step in range(1, points):
        page.mouse.move(x - 50 + 50 * step, y + 5 * (step % 2))
    page.mouse.up()


def inside(box: dict, viewport: dict) -> bool:
    return (box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= viewport["width"]
            and box["y"] + box["height"] <= viewport["height"])


@pytest.fixture
def scratch(monkeypatch) -> list[Path]:
    """The mask files the page's own sources (upload, drawing) write for requests, as they are made."""
    from diffueraser.app import sources

    made: list[Path] = []
    real = sources.scratch_file

    def recorded(suffix: str) -> Path:
        made.append(real(suffix))
        return made[-1]

    monkeypatch.setattr(sources, "scratch_file", recorded)
    return made


def left_over(made: list[Path]) -> list[Path]:
    """Those of the request's mask files still there."""
    return [path for path in made if path.exists() or path.parent.exists()]


# ---------------------------------------------------------------------------------------------


def test_first_screen_shows_video_mask_source_erase_and_examples_at_1366x768(page):
    screenshot(page, "first_screen_1366x768")
    first_screen = ("#input-video", "#mask-source", "#erase-button", "#stop-button", "#examples",
                    "#outputs [role=tablist]")
    for part in first_screen:
        assert inside(page.locator(part).bounding_box(), DESKTOP), part
    video, result = page.locator("#input-video").bounding_box(), page.locator("#outputs").bounding_box()
    assert result["x"] > video["x"] + video["width"] - 1  # the output is the right column
    assert page.locator("#examples img").count() >= 3  # thumbnails, not text buttons
    titles = page.locator("#examples img").evaluate_all("imgs => imgs.map(i => i.alt)")
    for words in ("(mask video)", "(mask image)", "(drawing)"):  # one example per mask source
        assert any(words in t for t in titles), titles
    # The checkpoint situation is one line; the details are folded until asked for.
    status = page.locator("#status").inner_text().strip().splitlines()[0]
    assert "weight-free propagation prior" in status and "details" in status
    assert not page.get_by_text("DIFFUERASER_WEIGHTS").first.is_visible()
    page.locator("#status").get_by_text("details").first.click()
    page.get_by_text("DIFFUERASER_WEIGHTS").first.wait_for(state="visible")  # unfolded
    # The rest of the settings are folded into "Advanced", each with its help.
    assert not page.locator("#setting-clip-length").is_visible()
    page.locator("#advanced").get_by_text("Advanced").first.click()
    page.locator("#setting-clip-length").wait_for(state="visible")
    assert "Frames denoised together" in page.locator("#setting-clip-length").inner_text()


def test_on_a_phone_the_columns_stack_and_the_frame_to_draw_on_fits(browser, page_url):
    context, page = open_page(browser, page_url[0], PHONE)
    try:
        screenshot(page, "first_screen_390x844")
        video, result = page.locator("#input-video").bounding_box(), page.locator("#outputs").bounding_box()
        assert result["y"] >= video["y"] + video["height"]  # stacked, output below the input
        assert video["width"] <= PHONE["width"] and result["width"] <= PHONE["width"]
        upload_video(page, page_url[1]["bikes_ball"].video)
        choose_source(page, "Draw on a frame")
        box = sketch_canvas(page)
        assert box["width"] > 0.5 * PHONE["width"] and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        screenshot(page, "draw_390x844")
    finally:
        context.close()


def test_the_expected_time_shows_before_a_run_and_follows_the_settings(page, page_url):
    assert "how long it takes" in page.locator("#estimate").inner_text()  # asks for a video first
    upload_video(page, page_url[1]["bikes_ball"].video)
    page.wait_for_function("document.querySelector('#estimate').innerText.includes('frames at')")
    text = page.locator("#estimate").inner_text()
    assert "about" in text and "on this machine" in text and "25 frames at 432×184" in text and "CPU" in text
    seconds = page.locator("#setting-max-seconds input[type=number]")
    seconds.fill("0.5")
    seconds.press("Enter")
    page.wait_for_function("document.querySelector('#estimate').innerText.includes('12 frames')")


def test_upload_a_video_and_a_mask_run_and_see_the_result_in_tabs(page, page_url):
    ex = page_url[1]["bikes_ball"]
    upload_video(page, ex.video)
    choose_source(page, "Mask video")
    page.locator("#mask-video input[type=file]").set_input_files(str(ex.mask))
    page.click("#erase-button")

    summary = wait_for_result(page)

    assert "25 frames at 432×184" in summary and "weight-free propagation prior" in summary  # which engine ran
    for tab, output in (("Before / after", "#comparison-video"), ("Prior", "#prior-video")):
        page.locator("#outputs").get_by_role("tab", name=tab).click()
        page.wait_for_selector(f"{output} video[src]")
    listed = page.locator("#downloads").inner_text()  # names show as stem and extension apart
    assert all(name in listed for name in ("result", "prior", "before_after", "mask"))
    page.locator("#outputs").get_by_role("tab", name="Result").click()
    src = page.locator("#result-video video").get_attribute("src")
    playable = page.evaluate("(src) => fetch(src).then(r => r.ok && r.headers.get('content-type'))", src)
    assert playable and "mp4" in playable
    screenshot(page, "upload_result", full_page=True)


def test_a_bad_mask_shows_its_message_and_the_page_keeps_working(page, page_url, tmp_path):
    ex = page_url[1]["bunny_watermark"]
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((234, 416), np.uint8))
    upload_video(page, ex.video)
    choose_source(page, "Mask image")
    page.locator("#mask-image input[type=file]").set_input_files(str(black))
    page.click("#erase-button")

    page.get_by_text("the mask is empty").first.wait_for()  # the error toast
    screenshot(page, "bad_mask_message")
    assert page.get_by_text("Traceback").count() == 0

    page.locator("#outputs").get_by_role("tab", name="Mask").click()  # back from the result tab
    page.locator("#mask-image button[aria-label='Clear']").first.click()
    page.locator("#mask-image input[type=file]").set_input_files(str(ex.mask))
    page.click("#erase-button")
    assert "25 frames at 416×234" in wait_for_result(page)


def test_draw_the_mask_on_a_frame_and_run(page, page_url, scratch):
    ex = page_url[1]["bikes_ball"]
    upload_video(page, ex.video)
    choose_source(page, "Draw on a frame")
    draw_stroke(page, sketch_canvas(page))
    screenshot(page, "drawn_mask")
    page.click("#erase-button")

    summary = wait_for_result(page)

    assert "25 frames at 432×184" in summary
    assert len(scratch) == 1 and left_over(scratch) == []  # the drawing's mask file was removed after the run
    screenshot(page, "drawn_result")


EXAMPLES = {  # words of the title: (size of the result, mask source the page shows)
    "(mask image)": ("416×234", "Mask image"),
    "(mask video)": ("432×184", "Mask video"),
    "(drawing)": ("416×234", "Draw on a frame"),
    "(select)": ("432×184", "Select (click the object)"),
    "(text)": ("416×234", "Text (subtitles, captions)"),
}


@pytest.mark.parametrize("words", list(EXAMPLES))
def test_an_example_is_one_click_from_a_result(page, words):
    size, source = EXAMPLES[words]
    thumbnails = page.locator("#examples img")
    titles = thumbnails.evaluate_all("imgs => imgs.map(i => i.alt)")
    if not any(words in t for t in titles):
        pytest.skip(f"no {words} example: that mask source is not on this page")
    thumbnails.nth(next(i for i, t in enumerate(titles) if words in t)).click()

    summary = wait_for_result(page)

    assert f"25 frames at {size}" in summary
    assert page.locator("#mask-source input:checked").evaluate("e => e.value") == source
    screenshot(page, "example_" + words.strip("()").replace(" ", "_"))


class SlowEngine:
    """The served engine made to take SLOW_JOB_S before its real work (reporting progress all
    along), so that Stop finds it running; `runs` records whether it ran to the end."""

    def __init__(self, real) -> None:
        self.real, self.runs = real, []

    def __call__(self, clip, holes, settings=None, progress=None):
        self.runs.append("started")
        steps = int(SLOW_JOB_S / SLOW_REPORT_S)
        for i in range(steps):
            if progress is not None:
                progress(Progress(PRIOR, i, steps, f"frame {i}"))
            time.sleep(SLOW_REPORT_S)
        self.runs.append("finished")
        return self.real(clip, holes, settings=settings, progress=progress)


@pytest.fixture
def slow_engine(page_url):
    state = jobs.served().state
    slow = SlowEngine(state.eraser)
    state.eraser = slow
    try:
        yield slow
    finally:
        state.eraser = slow.real


def test_stop_ends_a_running_job_and_the_next_one_completes(page, page_url, slow_engine, scratch):
    ex = page_url[1]["bunny_watermark"]
    upload_video(page, ex.video)
    choose_source(page, "Draw on a frame")  # a source that writes a temporary mask file
    draw_stroke(page, sketch_canvas(page))
    page.click("#erase-button")
    page.get_by_text("left").first.wait_for()  # progress with the time remaining
    assert slow_engine.runs == ["started"] and len(left_over(scratch)) == 1
    threads = threading.active_count()

    started = time.perf_counter()
    page.click("#stop-button")
    page.wait_for_function("document.querySelector('#summary').innerText.includes('Stopped')")
    deadline = time.time() + 10
    while left_over(scratch) and time.time() < deadline:  # the worker unwinds at its next report
        time.sleep(0.05)
    assert left_over(scratch) == [] and slow_engine.runs == ["started"]  # freed, files removed, not finished
    assert time.perf_counter() - started < SLOW_JOB_S / 4
    assert jobs.served().slots.acquire(timeout=5)  # the job's slot is free again
    jobs.served().slots.release()
    assert threading.active_count() <= threads

    jobs.served().state.eraser = slow_engine.real  # the next job runs the real engine
    page.click("#erase-button")
    assert "25 frames at 416×234" in wait_for_result(page)


def shown_image_point(page, selector: str, x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """Where pixel (x, y) of a width x height frame is on the screen, in the image `selector` shows
    (centred, scaled down to fit, never up)."""
    box = page.locator(selector).bounding_box()
    scale = min(box["width"] / width, box["height"] / height, 1.0)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    return left + x * scale, top + y * scale


def test_select_click_the_ball_see_it_track_it_and_erase(page, page_url, tmp_path):
    if page.locator("#mask-source").get_by_text("Select (click the object)").count() == 0:
        pytest.skip("the Select mask source is not on this page")
    from examples.make_examples import BIKES_SIZE, ball_path

    # The first second: the preview of the tracked mask covers the video only up to the server's
    # maximum seconds (1 here).
    clip = media.write_video(tmp_path / "ball.mp4", media.read_video(page_url[1]["bikes_ball"].video,
                                                                       max_seconds=1.0).frames, 25)
    upload_video(page, clip)
    choose_source(page, "Select (click the object)")
    page.wait_for_selector("#select-frame img[src]")
    before = page.locator("#select-frame img").get_attribute("src")
    tracker = page.locator("#select-tracker input")
    tracker.click()
    page.get_by_role("option", name="flow", exact=True).click()  # the weight-free tracker: no checkpoint

    x, y = ball_path(np.array([0.0]), *BIKES_SIZE)
    page.locator("#select-frame img").scroll_into_view_if_needed()  # the mouse only reaches what is shown
    page.mouse.click(*shown_image_point(page, "#select-frame img", float(x[0]), float(y[0]), *BIKES_SIZE))
    page.wait_for_function(f"document.querySelector('#select-frame img').src !== {before!r}")
    page.wait_for_function("document.querySelector('#select-note').innerText.includes('flow')")
    screenshot(page, "select_clicked")  # the ball tinted, the click marked
    page.click("#select-track")
    page.wait_for_selector("#select-preview video[src]", timeout=RESULT_TIMEOUT_MS)
    assert "Tracked 1 object(s) with flow" in page.locator("#select-note").inner_text()
    screenshot(page, "select_tracked")
    page.click("#erase-button")

    summary = wait_for_result(page)

    assert "25 frames at 432×184" in summary
    screenshot(page, "select_result")
