"""Long videos in segments: the split, the cross-fade, and the streaming engine built on them."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from diffueraser import Eraser, Settings, segments
from diffueraser.errors import InputError
from diffueraser.media import probe, read_video
from footage import has_audio, make_clip, moving_box_masks

PRIOR_ONLY = Settings(diffusion=False, prior="propagation", device="cpu", seed=0)


def numbered(count: int, size: tuple[int, int] = (4, 6)):
    """Frames whose every pixel is their index, and holes marking odd frames."""
    frames = (np.full((*size, 3), t, np.uint8) for t in range(count))
    holes = (np.full(size, t % 2 == 1) for t in range(count))
    return frames, holes


@pytest.mark.parametrize("count, longest", [(5, 16), (16, 16), (17, 16), (24, 16), (25, 16), (100, 16), (61, 20)])
def test_split_covers_every_frame_in_order_with_shared_frames_between(count, longest):
    overlap = segments.overlap_for(longest)
    length, parts_planned = segments.plan(count, longest, overlap)
    assert length <= longest
    seen, previous_end = [], 0
    parts = list((s.start, s.frames[:, 0, 0, 0].copy(), s.holes[:, 0, 0].copy(), s.shared, s.last)
                 for s in segments.split(*numbered(count), length, overlap))
    assert len(parts) == parts_planned
    for k, (start, frames, holes, shared, last) in enumerate(parts):
        assert list(frames) == list(range(start, start + len(frames)))  # the stream's own frames
        assert list(holes) == [t % 2 == 1 for t in frames]  # each with its hole
        assert shared == (0 if k == 0 else overlap) and start == previous_end - shared
        assert last == (k == len(parts) - 1)
        if parts_planned > 1:
            assert len(frames) >= length - 1  # all of one length: no short last segment
        previous_end = start + len(frames)
        seen += list(frames[shared:])
    assert seen == list(range(count))


def test_split_of_a_stream_longer_than_expected_keeps_going():
    parts = list(segments.split(*numbered(30), 12, 3))
    assert [(p.start, len(p.frames)) for p in parts] == [(0, 12), (9, 12), (18, 12)]
    assert [p.last for p in parts] == [False, False, True]


def test_crossfade_ramps_from_the_earlier_result_to_the_later_and_keeps_agreeing_pixels():
    earlier = np.zeros((8, 8, 3), np.uint8)
    later = earlier.copy()
    earlier[2:4, 2:5], later[2:4, 2:5] = 0, 200
    shared = 3
    mixed = [segments.crossfade(earlier, later, i, shared) for i in range(shared)]
    assert [m[2, 2, 0] for m in mixed] == [50, 100, 150]  # (i + 1) / (shared + 1) of the way
    for m in mixed:
        outside = np.ones((8, 8), bool)
        outside[2:4, 2:5] = False
        assert (m[outside] == later[outside]).all()


def test_segment_length_follows_the_frame_size_within_the_budget():
    hd = segments.segment_length((1080, 1920), (536, 960))
    small = segments.segment_length((272, 640), (272, 640))
    assert segments.MIN_SEGMENT_FRAMES <= hd < small
    per_frame = 4 * 1080 * 1920 + 12 * 536 * 960
    assert hd * per_frame <= segments.SEGMENT_BUDGET_BYTES < (hd + 1) * per_frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segments")
    path = make_clip(folder / "bikes.mp4", frames=40, width=160)
    video = read_video(path)
    masks = moving_box_masks(video.num_frames, video.height, video.width, box=20, step=3)
    return path, video, masks


def test_a_video_of_one_segment_is_filled_whole_and_streamed_to_the_same_result(clip, tmp_path):
    path, video, masks = clip
    whole = Eraser(PRIOR_ONLY)(video, masks)
    summary = Eraser(PRIOR_ONLY).erase_file(path, masks, tmp_path / "out.mp4")
    written = read_video(summary.output)
    assert summary.num_frames == written.num_frames == video.num_frames == 40
    assert summary.fps == video.fps and has_audio(summary.output)
    # Only the encoder stands between the two: H.264 at crf 18 on this footage.
    assert np.abs(written.frames.astype(int) - whole.frames.astype(int)).mean() < 2.0


def test_segments_join_without_a_seam_and_stay_close_to_the_whole_video(clip):
    _, video, masks = clip
    whole = Eraser(PRIOR_ONLY)(video, masks)
    parts = Eraser(PRIOR_ONLY)(video, masks, settings=PRIOR_ONLY.replace(segment_frames=24))  # [0, 23) and [17, 40)
    assert parts.frames.shape == whole.frames.shape
    near = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
                     for m in whole.masks | parts.masks])  # the blurred edge reaches 10 px out
    assert (parts.frames[~near] == video.frames[~near]).all()  # away from the holes: the input, exactly
    hole = whole.masks
    gap = np.abs(parts.frames.astype(int) - whole.frames.astype(int))[hole].mean()
    assert gap < 8  # each segment sees less of the video
    # No seam: from one frame to the next, the hole changes hardly more than in the whole-video run.
    def steps(frames: np.ndarray) -> np.ndarray:
        return np.array([np.abs(frames[t + 1].astype(int) - frames[t].astype(int))[hole[t] & hole[t + 1]].mean()
                         for t in range(len(hole) - 1)])

    join = slice(16, 23)  # into, through and out of the shared frames 17..22
    assert np.nanmax((steps(parts.frames) - steps(whole.frames))[join]) < 3


def test_erase_file_streams_long_videos_in_segments_with_prior_and_audio(clip, tmp_path):
    path, video, masks = clip
    settings = PRIOR_ONLY.replace(segment_frames=12)
    summary = Eraser(settings).erase_file(path, masks, tmp_path / "out.mp4", prior_output=tmp_path / "prior.mp4")
    out, prior = read_video(summary.output), read_video(summary.prior_output)
    assert out.num_frames == prior.num_frames == 40 and out.fps == video.fps
    assert abs(probe(summary.output).duration - probe(path).duration) <= 1 / video.fps + 0.05
    assert has_audio(summary.output) and not has_audio(summary.prior_output)
    reference = Eraser(settings)(video, masks)
    assert np.abs(out.frames.astype(int) - reference.frames.astype(int)).mean() < 2.0


def test_erase_file_checks_every_output_before_any_work(clip, tmp_path):
    path, _, masks = clip
    eraser = Eraser(PRIOR_ONLY)
    with pytest.raises(InputError, match="input video"):
        eraser.erase_file(path, masks, path)
    with pytest.raises(InputError, match="prior 'none'"):
        Eraser(PRIOR_ONLY.replace(prior="none", diffusion=True)).erase_file(
            path, masks, tmp_path / "o.mp4", prior_output=tmp_path / "p.mp4")
    assert not (tmp_path / "o.mp4").exists()
