"""The page's Text mask source and the `/detect_text` endpoint, on a clip with known text."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from text_groundtruth import make_clip  # noqa: E402

from diffueraser import media  # noqa: E402
from diffueraser.errors import InputError  # noqa: E402

SIZE, FRAMES = (272, 640), 20
BAND_TOP = SIZE[0] - round(SIZE[0] / 3)


def read_mask(path) -> np.ndarray:
    return media.read_video(path).frames[..., 0] >= 128


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    made = make_clip("seen", FRAMES, SIZE)
    path = tmp_path_factory.mktemp("text_app") / "captions.mp4"
    media.write_video(path, made.frames, 25.0)
    return made, path


@pytest.fixture(scope="module")
def text_page():
    import gradio as gr

    from diffueraser.app.texting import build_text_source

    with gr.Blocks() as demo:
        video = gr.Video()
        source = build_text_source(video)
    return demo, source


def test_region_choice_and_rectangle_make_the_region():
    from diffueraser.app.texting import region_text

    assert region_text("bottom", "ignored") == "bottom"
    assert region_text("rect", " 0, 10, 100, 60 ") == "0,10,100,60"
    with pytest.raises(InputError, match="Type the rectangle"):
        region_text("rect", "")
    with pytest.raises(InputError, match="has no area"):
        region_text("rect", "10,10,10,20")


def test_erase_without_detect_detects_the_text_of_the_chosen_band(clip, text_page):
    made, path = clip
    _, source = text_page
    mask = source.make_mask(str(path), "bottom", "", None, None)
    masks = read_mask(mask)
    assert masks.shape == made.text.shape
    assert masks[:, BAND_TOP:].any() and not masks[:, :BAND_TOP].any()
    assert (masks & made.text)[:, BAND_TOP:].sum() >= 0.99 * made.text[:, BAND_TOP:].sum()


def test_an_added_mask_is_combined_with_the_detected_text(clip, text_page, tmp_path):
    made, path = clip
    _, source = text_page
    logo = np.zeros(SIZE, np.uint8)
    logo[100:140, 280:360] = 255
    cv2.imwrite(str(tmp_path / "logo.png"), logo)
    from diffueraser.app.jobs import output_root

    before = set(output_root().iterdir()) if output_root().exists() else set()
    mask = source.make_mask(str(path), "bottom", "", None, str(tmp_path / "logo.png"))
    assert set(output_root().iterdir()) - before == {Path(mask).parent}  # the detected mask is gone
    masks = read_mask(mask)
    assert masks[:, 100:140, 280:360].all()  # the added mask, every frame
    assert masks[:, BAND_TOP:].any()  # and the text
    outside = masks.copy()
    outside[:, 100:140, 280:360] = False
    assert not outside[:, :BAND_TOP].any()


def test_a_detected_mask_is_reused_by_the_erase(clip, text_page, tmp_path):
    _, path = clip
    _, source = text_page
    kept = tmp_path / "detected.mp4"
    frames = np.zeros((FRAMES, *SIZE, 3), np.uint8)
    frames[:, 10:20, 10:20] = 255  # not what detection would give: proves it was reused
    media.write_video(kept, frames, 25.0)
    mask = source.make_mask(str(path), "full", "", (str(path), "full", str(kept)), None)
    assert mask != str(kept) and Path(kept).exists()  # a copy: the erase removes its own mask
    assert np.array_equal(read_mask(mask), read_mask(kept))


def test_preview_shows_the_mask_over_the_video(clip, text_page):
    from diffueraser.app.texting import preview_video, run_detection

    made, path = clip
    mask, report = run_detection(str(path), "full")
    assert report.frames == FRAMES
    shown = media.read_video(preview_video(str(path), mask)).frames
    assert shown.shape[0] == FRAMES and shown.shape[1:3] == made.frames.shape[1:3]
    masks = read_mask(mask)
    red = shown[..., 0].astype(int) - shown[..., 1]
    assert red[masks].mean() > red[~masks].mean() + 40


def test_detect_text_endpoint_from_gradio_client(clip, text_page, tmp_path):
    from gradio_client import Client, handle_file

    made, path = clip
    demo, _ = text_page
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path))
        mask, note = client.predict(handle_file(str(path)), "bottom", api_name="/detect_text")
        masks = read_mask(mask)
        assert masks[:, BAND_TOP:].any() and not masks[:, :BAND_TOP].any()
        assert "Text found on" in note and "region: bottom" in note
        with pytest.raises(Exception, match="unknown text region 'middle'"):
            client.predict(handle_file(str(path)), "middle", api_name="/detect_text")
    finally:
        demo.close()


def test_erase_text_mode_detects_and_joins_the_given_mask(clip, tmp_path):
    from diffueraser.app.texting import mask_with_text

    made, path = clip
    assert mask_with_text(str(path), "given.png", "") == "given.png"
    logo = np.zeros(SIZE, np.uint8)
    logo[100:140, 280:360] = 255
    cv2.imwrite(str(tmp_path / "logo.png"), logo)
    masks = read_mask(mask_with_text(str(path), str(tmp_path / "logo.png"), "top"))
    band = round(SIZE[0] / 3)
    assert masks[:, 100:140, 280:360].all() and masks[:, :band].any()
    masks[:, 100:140, 280:360] = False
    assert not masks[:, band:].any()
    with pytest.raises(InputError, match="unknown text region"):
        mask_with_text(str(path), None, "left")


def test_stop_stops_the_detection_and_leaves_no_file(clip, monkeypatch):
    from diffueraser.app import jobs, texting

    _, path = clip
    seen = []
    real = texting.scratch_file
    monkeypatch.setattr(texting, "scratch_file", lambda suffix: seen.append(real(suffix)) or seen[-1])
    with jobs.watching("detecting-session"):
        jobs.stop("detecting-session")
        with pytest.raises(jobs.Stopped):
            texting.run_detection(str(path), "full")
    assert seen and not seen[0].parent.exists()
