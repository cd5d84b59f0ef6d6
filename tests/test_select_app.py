"""The page's Select source: clicks kept as prompts, the frame segmented at once, tracking and the
`/segment` endpoint (through gradio_client), the mask the erase receives."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from diffueraser.app import selecting
from diffueraser.app.sources import MaskSource
from diffueraser.errors import InputError
from diffueraser.media import read_video
from footage import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("select_app") / "in.mp4", frames=10, width=160, audio=False)


@pytest.fixture(autouse=True)
def no_checkpoints(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DIFFUERASER_WEIGHTS", str(tmp_path))


def test_clicks_make_points_boxes_and_objects_in_the_videos_pixels():
    prompts, pending = selecting.add_click([], 1, 3, 10.0, 20.0, selecting.POSITIVE_CLICK, None)
    prompts, pending = selecting.add_click(prompts, 1, 3, 12.0, 22.0, selecting.NEGATIVE_CLICK, pending)
    assert prompts == [{"object": 1, "frame": 3, "points": [[10.0, 20.0], [12.0, 22.0]], "labels": [1, 0]}]
    prompts, pending = selecting.add_click(prompts, 2, 5, 40.0, 10.0, selecting.BOX_CLICK, pending)
    assert pending == [5, 40.0, 10.0] and len(prompts) == 1  # one corner: nothing added yet
    prompts, pending = selecting.add_click(prompts, 2, 5, 20.0, 30.0, selecting.BOX_CLICK, pending)
    assert pending is None and prompts[1] == {"object": 2, "frame": 5, "box": [20.0, 10.0, 40.0, 30.0]}
    assert selecting.new_object(prompts, 2) == 3 and selecting.new_object(prompts, 4) == 4
    assert selecting.drop_last(prompts) == prompts[:1]
    with pytest.raises(InputError, match="zero area"):
        selecting.add_click(prompts, 3, 5, 20.0, 30.0, selecting.BOX_CLICK, [5, 20.0, 30.0])


def test_only_negative_clicks_are_not_yet_a_selection():
    assert selecting.valid_prompts([{"object": 1, "frame": 0, "points": [[1, 1]], "labels": [0]}]) is None


def test_a_click_segments_that_frame_at_once(clip):
    mask = selecting.segment_frame(str(clip), 4, [{"object": 1, "frame": 4, "box": [60, 20, 110, 60]}], "flow")
    frame = read_video(clip).frames[4]
    assert mask.shape == frame.shape[:2] and mask[20:60, 60:110].any() and not mask[:, :40].any()
    shown = selecting.overlay(frame, mask, [{"object": 1, "frame": 4, "box": [60, 20, 110, 60]}], 4, 1.0)
    assert shown.shape == frame.shape and not np.array_equal(shown, frame)
    assert selecting.segment_frame(str(clip), 2, [{"object": 1, "frame": 4, "box": [60, 20, 110, 60]}],
                                   "flow") is None  # no prompt on that frame


def test_words_box_says_why_it_is_unavailable():
    offered, note = selecting.words_note()
    assert not offered and "facebook/sam3" in note and "HF_TOKEN" in note


def test_the_source_builds_and_its_mask_is_the_tracked_union(clip):
    import gradio as gr

    with gr.Blocks():
        video = gr.Video()
        frame = gr.Slider(0, 9, step=1)
        source = selecting.build_select_source(video, frame)
    assert isinstance(source, MaskSource) and source.label == selecting.SELECT and source.frame_index
    prompts = [{"object": 1, "frame": 4, "box": [60, 20, 110, 60]}, {"object": 2, "frame": 1, "points": [[30, 50]],
                                                                    "labels": [1]}]
    mask = source.make_mask(str(clip), prompts, "", "flow", None)
    got = read_video(mask)
    assert got.frames.shape == read_video(clip).frames.shape and (got.frames[4, 20:60, 60:110] > 127).any()
    assert source.make_mask(str(clip), [], "", "auto", None) is None  # nothing selected: no mask


def test_segment_endpoint_through_gradio_client(clip, tmp_path):
    import gradio as gr
    from gradio_client import Client, handle_file

    with gr.Blocks() as demo:
        video = gr.Video()
        frame = gr.Slider(0, 9, step=1)
        selecting.build_select_source(video, frame)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path))
        prompts = json.dumps([{"object": 1, "frame": 4, "box": [60, 20, 110, 60]}])
        mask, note = client.predict(handle_file(str(clip)), prompts, "flow", api_name="/segment")
        assert read_video(mask).num_frames == 10 and "Tracked 1 object(s) with flow" in note
        with pytest.raises(Exception) as e:
            client.predict(handle_file(str(clip)), '[{"frame": 99, "points": [[5, 5]]}]', "flow",
                           api_name="/segment")
        assert "past the end of the video" in str(e.value) and str(tmp_path) not in str(e.value)
    finally:
        demo.close()


def test_stop_stops_the_tracking_and_leaves_no_file(clip, monkeypatch):
    from diffueraser.app import jobs

    seen = []
    real = selecting.scratch_file
    monkeypatch.setattr(selecting, "scratch_file", lambda suffix: seen.append(real(suffix)) or seen[-1])
    with jobs.watching("tracking-session"):
        def report(fraction, desc=""):
            jobs.stop("tracking-session")  # Stop pressed once the first frames are tracked

        with pytest.raises(jobs.Stopped):
            selecting.run_tracking(str(clip), [{"object": 1, "frame": 0, "box": [60, 20, 110, 60]}], "flow",
                                   report=report)
    assert seen and not seen[0].exists() and not seen[0].parent.exists()
    # Outside any page session (an API call) nothing stops it.
    mask, _ = selecting.run_tracking(str(clip), [{"object": 1, "frame": 0, "box": [60, 20, 110, 60]}], "flow")
    assert read_video(mask).num_frames == 10

