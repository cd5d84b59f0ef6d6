"""End to end from files to files, without diffusion weights (weight-free prior) and with tiny models."""
from __future__ import annotations

import numpy as np
import pytest

from diffueraser import Eraser, InputError, Settings
from diffueraser.masks import dilate_masks, resize_masks, working_size
from diffueraser.media import read_video
from diffueraser.progress import STAGES
from footage import has_audio, make_clip, moving_box_masks

PRIOR_ONLY = Settings(diffusion=False, prior="propagation", device="cpu")
CODEC_MEAN_TOLERANCE = 2.0
"""Mean absolute change (0-255) an H.264 round trip of the result leaves far from the hole
(measured: 1.2 on the bikes clip)."""
HOLE_MIN_CHANGE = 8.0
"""Mean absolute change a filled hole shows at least (measured: 14 for the propagation prior)."""


def filled_area(clip, masks, settings):
    """The dilated hole at the input size, and everything the 21x21 blend can reach around it."""
    size = working_size(clip.height, clip.width, settings.max_size)
    hole = resize_masks(dilate_masks(resize_masks(masks, size), settings.mask_dilation), (clip.height, clip.width))
    return hole, dilate_masks(hole, 11)


def assert_written_result_keeps_the_input_and_fills_the_hole(written, clip, hole, margin):
    """The video read back from the written file: far pixels as the input within the codec's loss,
    the hole clearly changed."""
    change = np.abs(written.frames.astype(np.int16) - clip.frames.astype(np.int16))
    assert change[~margin].mean() < CODEC_MEAN_TOLERANCE
    assert change[hole].mean() > HOLE_MIN_CHANGE


def assert_reports_follow_the_data_flow(reports):
    """Stages from the fixed vocabulary, in data-flow order, each counted from 0 to its total."""
    order = [STAGES.index(r.stage) for r in reports]
    assert order == sorted(order), [r.stage for r in reports]
    assert all(0 <= r.done <= r.total for r in reports)
    for a, b in zip(reports, reports[1:]):
        if a.stage == b.stage:
            assert a.total == b.total and a.done <= b.done, (a, b)
        else:
            assert a.done == a.total and b.done == 0, (a, b)
    assert reports[0].done == 0 and reports[-1].done == reports[-1].total


@pytest.fixture(scope="module")
def bikes(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("engine") / "bikes.mp4", frames=30, width=320)


def test_prior_only_result_keeps_frames_fps_size_and_audio(bikes, tmp_path):
    clip = read_video(bikes)
    masks = moving_box_masks(clip.num_frames, clip.height, clip.width)
    reports = []
    result = Eraser(PRIOR_ONLY)(bikes, masks, progress=reports.append)
    out = result.save(tmp_path / "out.mp4")
    back = read_video(out)
    assert back.frames.shape == clip.frames.shape
    assert back.fps == pytest.approx(clip.fps)
    assert has_audio(out)
    assert result.prior is not None and result.prior.shape == clip.frames.shape
    assert_written_result_keeps_the_input_and_fills_the_hole(back, clip, *filled_area(clip, masks, PRIOR_ONLY))
    assert_reports_follow_the_data_flow(reports)
    assert [r.stage for r in reports if r.done == r.total] == ["reading", "masks", "prior", "writing"]


def test_pixels_away_from_the_hole_are_bit_identical_to_the_input(bikes):
    clip = read_video(bikes)
    masks = moving_box_masks(clip.num_frames, clip.height, clip.width)
    result = Eraser(PRIOR_ONLY)(clip, masks)
    hole, margin = filled_area(clip, masks, PRIOR_ONLY)
    assert np.array_equal(result.frames[~margin], clip.frames[~margin])
    assert not np.array_equal(result.frames[hole], clip.frames[hole])


def test_input_larger_than_max_size_comes_back_at_its_own_size(bikes):
    clip = read_video(bikes)
    masks = moving_box_masks(clip.num_frames, clip.height, clip.width)
    result = Eraser(PRIOR_ONLY.replace(max_size=160))(clip, masks)
    assert result.frames.shape == clip.frames.shape


def test_single_frame_video_works(bikes):
    clip = read_video(bikes, max_frames=1)
    masks = moving_box_masks(1, clip.height, clip.width)
    assert Eraser(PRIOR_ONLY)(clip, masks).frames.shape == clip.frames.shape


def test_empty_mask_is_refused_with_a_message(bikes):
    with pytest.raises(InputError, match="empty"):
        Eraser(PRIOR_ONLY)(bikes, np.zeros((136, 320), bool))


def test_seed_is_drawn_when_not_given_and_kept_when_given(bikes):
    clip = read_video(bikes, max_frames=2)
    masks = moving_box_masks(2, clip.height, clip.width)
    assert Eraser(PRIOR_ONLY.replace(seed=7))(clip, masks).seed == 7
    assert 0 <= Eraser(PRIOR_ONLY)(clip, masks).seed < 2**31


# ---- with the diffusion model (tiny checkpoints written in the released formats) -------------


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from tiny_checkpoints import write_tiny_weights

    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def long_bikes(tmp_path_factory):
    # 66 frames > 2 clips of 22: triggers pre-inference; 160x68 → working size 160x64.
    return make_clip(tmp_path_factory.mktemp("engine_long") / "bikes66.mp4", frames=66, width=160)


@pytest.mark.parametrize("prior", ["propagation", "propainter"])
def test_diffusion_end_to_end_with_tiny_checkpoints(tiny_weights, long_bikes, tmp_path, prior):
    settings = Settings(prior=prior, device="cpu", seed=3, raft_iters=2)
    eraser = Eraser.from_pretrained(settings, weights_dir=tiny_weights)
    clip = read_video(long_bikes)
    masks = moving_box_masks(clip.num_frames, clip.height, clip.width, box=16, step=1)
    reports = []
    result = eraser(long_bikes, masks, progress=reports.append)
    out = read_video(result.save(tmp_path / "out.mp4"))
    assert out.frames.shape == clip.frames.shape == (66, 68, 160, 3)
    assert out.fps == pytest.approx(clip.fps)
    assert has_audio(tmp_path / "out.mp4")
    assert_reports_follow_the_data_flow(reports)
    assert list(dict.fromkeys(r.stage for r in reports)) == ["reading", "masks", "prior", "diffusion", "decoding",
                                                             "writing"]
    assert any(", clip " in r.detail for r in reports if r.stage == "diffusion")
    hole, margin = filled_area(clip, masks, settings)
    assert np.array_equal(result.frames[~margin], clip.frames[~margin])
    assert_written_result_keeps_the_input_and_fills_the_hole(out, clip, hole, margin)
    # The diffusion output differs from the prior inside the hole (random tiny weights change it).
    assert not np.array_equal(result.frames[hole], result.prior[hole])


def test_changing_steps_refuses_nothing_and_swaps_the_lora(tiny_weights, long_bikes):
    eraser = Eraser.from_pretrained(Settings(prior="propagation", device="cpu", seed=1), weights_dir=tiny_weights)
    clip = read_video(long_bikes, max_frames=4)
    masks = moving_box_masks(4, clip.height, clip.width, box=16)
    two = eraser(clip, masks).frames
    four = eraser(clip, masks, settings=eraser.settings.replace(steps=4)).frames
    assert eraser.diffuser.lora_steps == 4
    assert not np.array_equal(two, four)
    again = eraser(clip, masks, settings=eraser.settings.replace(steps=2)).frames
    assert np.array_equal(two, again)
