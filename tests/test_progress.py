"""The progress type and its adapters: the page's one bar driven by a real run, the command line's bars."""
from __future__ import annotations

import io
import re

import cv2
import numpy as np
import pytest

from diffueraser import Eraser, Settings, media
from diffueraser.__main__ import main
from diffueraser.diffusion import clip_windows
from diffueraser.media import read_video
from diffueraser.progress import STAGE_SPANS, STAGES, GradioProgress, Progress, TqdmProgress, silent
from footage import make_clip, moving_box_masks


def test_fraction_and_permille_stay_within_the_stage():
    assert Progress("diffusion", 3, 12).fraction == 0.25
    assert Progress("writing", 0, 0).fraction == 1.0
    assert Progress.permille("prior", 0.4567, "optical flow") == Progress("prior", 457, 1000, "optical flow")
    assert Progress.permille("prior", 1.2).done == 1000 and Progress.permille("prior", -0.1).done == 0
    assert silent(Progress("reading", 0, 1)) is None


@pytest.mark.parametrize("diffusion", [True, False])
def test_spans_tile_the_bar_in_data_flow_order(diffusion):
    spans = STAGE_SPANS[diffusion]
    assert list(spans) == [s for s in STAGES if s in spans]
    ends = [end for _, end in spans.values()]
    starts = [start for start, _ in spans.values()]
    assert starts[0] == 0.0 and ends[-1] == 1.0 and starts[1:] == ends[:-1]
    assert ("diffusion" in spans) == diffusion and "saving" in spans


def test_gradio_bar_never_goes_back_and_keeps_the_label():
    seen = []
    bar = GradioProgress(lambda fraction, desc: seen.append((fraction, desc)), diffusion=False)
    for report in [Progress("reading", 1, 1), Progress("prior", 500, 1000, "shot 1 of 1"), Progress("prior", 0, 1000),
                   Progress("unknown", 1, 1), Progress("writing", 1, 1), Progress("saving", 2, 2)]:
        bar(report)
    assert [f for f, _ in seen] == pytest.approx([0.1, 0.475, 0.475, 0.475, 0.85, 1.0])
    assert seen[1][1] == "prior: shot 1 of 1" and seen[3][1] == "unknown" and seen[-1] == (1.0, "saving")


def test_tqdm_draws_one_bar_per_stage_with_its_total_and_detail():
    out = io.StringIO()
    with TqdmProgress(file=out) as bars:
        bars(Progress("reading", 0, 1))
        bars(Progress("reading", 1, 1))
        for i in range(13):
            bars(Progress("diffusion", i, 12, f"step 1/2, clip {i} of 12" if i else ""))
        for i in range(4):
            bars(Progress("decoding", i, 3))
    finished = out.getvalue().split("\n")
    assert len(finished) == 4 and finished[-1] == "", "each of the three bars is closed once, on its own line"
    last = [line.split("\r")[-1] for line in finished[:3]]
    assert last[0].startswith("reading: 100%") and "1/1" in last[0]
    assert last[1].startswith("diffusion: 100%") and "12/12" in last[1] and "step 1/2, clip 12 of 12" in last[1]
    assert last[2].startswith("decoding: 100%") and "3/3" in last[2]

    quiet = io.StringIO()
    TqdmProgress(file=quiet, enabled=False)(Progress("reading", 0, 1))
    assert quiet.getvalue() == ""


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("progress") / "bikes.mp4", frames=12, width=160)


def test_command_line_shows_a_finished_bar_per_stage_on_stderr(clip, tmp_path, capsys):
    video = read_video(clip)
    masks = moving_box_masks(video.num_frames, video.height, video.width, box=16)
    mask_file = tmp_path / "mask.png"  # one mask image serves every frame
    cv2.imwrite(str(mask_file), masks[0].astype(np.uint8) * 255)
    code = main([str(clip), str(mask_file), "-o", str(tmp_path / "out.mp4"), "--no-diffusion",
                 "--prior", "propagation"])
    assert code == 0
    err = capsys.readouterr().err
    finished = {}
    for line in err.split("\n"):
        shown = line.split("\r")[-1]
        match = re.match(r"(\w+): 100%.*\| (\d+)/(\d+) ", shown)
        if match:
            finished[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    assert finished == {"reading": (1, 1), "masks": (1, 1), "prior": (1000, 1000), "writing": (12, 12),
                        "saving": (1, 1)}


def test_the_writing_bar_ends_full_when_the_stated_length_overshoots(clip, tmp_path, capsys, monkeypatch):
    # A container may state more frames than decode; the stage still ends at 100 %.
    monkeypatch.setattr(media.VideoStream, "expected_frames", property(lambda self: 30))
    video = read_video(clip)
    mask_file = tmp_path / "mask.png"
    cv2.imwrite(str(mask_file), moving_box_masks(1, video.height, video.width, box=16)[0].astype(np.uint8) * 255)
    assert main([str(clip), str(mask_file), "-o", str(tmp_path / "out.mp4"), "--no-diffusion",
                 "--prior", "propagation"]) == 0
    last = capsys.readouterr().err.split("writing: ")[-1].split("\r")[0].split("\n")[0]
    assert last.startswith("100%") and "12/12" in last


# ---- the page's bar driven by a real run with the diffusion model (tiny checkpoints) -------------


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from tiny_checkpoints import write_tiny_weights

    return write_tiny_weights(tmp_path_factory.mktemp("weights"), parts=("denoiser", "text", "scheduler", "vae", "pcm"))


@pytest.mark.usefixtures("one_thread")
def test_page_bar_advances_at_every_diffusion_clip_and_ends_full_after_saving(tiny_weights, clip):
    settings = Settings(prior="propagation", device="cpu", seed=0, clip_length=4)
    eraser = Eraser.from_pretrained(settings, weights_dir=tiny_weights, local_files_only=True)
    video = read_video(clip)
    masks = moving_box_masks(video.num_frames, video.height, video.width, box=16)
    seen = []
    bar = GradioProgress(lambda fraction, desc: seen.append((fraction, desc)), diffusion=True)
    eraser(video, masks, progress=bar)
    for done in range(3):  # the app's own last stage: result, prior and comparison videos
        bar(Progress("saving", done + 1, 3))

    fractions = [f for f, _ in seen]
    assert all(a <= b for a, b in zip(fractions, fractions[1:])), "the bar never goes back"
    assert fractions[-1] == 1.0
    clips = [i for i, (_, desc) in enumerate(seen) if re.match(r"diffusion: step \d/2, clip \d+ of \d+", desc)]
    windows = clip_windows(video.num_frames, settings.clip_length, settings.overlap)
    assert len(clips) == sum(len(windows.for_step(i)) for i in range(settings.steps)) > 4
    assert all(fractions[i] > fractions[i - 1] for i in clips), "every clip moves the bar"
    span = STAGE_SPANS[True]["diffusion"]
    assert all(span[0] < fractions[i] <= span[1] for i in clips)
