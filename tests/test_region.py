"""Crop-to-mask: the crops' geometry, the engine on crops, and crop against frame quality."""
from __future__ import annotations

import numpy as np
import pytest

from diffueraser import Eraser, Settings, region
from diffueraser.media import read_video
from footage import make_clip

PRIOR_ONLY = Settings(diffusion=False, prior="propagation", device="cpu", seed=0)


def holes_with(boxes, count=4, size=(720, 1280)) -> np.ndarray:
    holes = np.zeros((count, *size), bool)
    for top, left, bottom, right in boxes:
        holes[:, top:bottom, left:right] = True
    return holes


def covers(crop: region.Crop, box) -> bool:
    top, left, bottom, right = box
    return crop.top <= top and crop.left <= left and bottom <= crop.top + crop.height and right <= crop.left + crop.width


def test_a_watermark_gets_one_crop_at_the_input_resolution_with_context_around_it():
    box = (600, 1000, 680, 1200)  # 200x80, bottom right
    crop, = region.plan(holes_with([box]), "auto", 960, grow=20)
    assert crop.height % 8 == 0 and crop.width % 8 == 0
    assert crop.working == (crop.height, crop.width)  # native resolution: no down- and up-scaling
    assert 0 <= crop.top and crop.top + crop.height <= 720 and 0 <= crop.left and crop.left + crop.width <= 1280
    grown = (box[0] - 20 - 64, box[1] - 20 - 64, min(720, box[2] + 20 + 64), min(1280, box[3] + 20 + 64))
    assert covers(crop, grown)
    assert crop.height * crop.width < 0.25 * 720 * 1280


def test_holes_in_opposite_corners_get_a_crop_each():
    boxes = [(20, 20, 60, 120), (660, 1160, 700, 1260)]
    crops = region.plan(holes_with(boxes), "crop", 960, grow=10)
    assert len(crops) == 2
    assert all(any(covers(c, b) for c in crops) for b in boxes)


def test_near_holes_share_one_crop():
    crops = region.plan(holes_with([(300, 300, 340, 360), (300, 380, 340, 440)]), "crop", 960, grow=10)
    assert len(crops) == 1


def test_a_hole_touching_the_border_or_corner_keeps_a_full_size_crop_inside_the_frame():
    crop, = region.plan(holes_with([(0, 0, 10, 10)]), "crop", 960, grow=4)
    assert (crop.top, crop.left) == (0, 0)
    assert crop.height >= region.MIN_CROP and crop.width >= region.MIN_CROP  # not cut by the corner
    crop, = region.plan(holes_with([(700, 1270, 720, 1280)]), "crop", 960, grow=4)
    assert crop.top + crop.height == 720 and crop.left + crop.width == 1280


def test_a_hole_over_most_of_the_frame_is_frame_mode():
    holes = holes_with([(100, 100, 650, 1200)])
    assert region.plan(holes, "auto", 960, grow=10) is None
    assert region.plan(holes, "crop", 960, grow=10) is None  # the crop would be the whole frame
    assert region.plan(holes_with([(300, 500, 380, 700)]), "frame", 960, grow=10) is None


def test_holes_on_some_frames_only_and_no_hole_at_all():
    holes = holes_with([(300, 500, 380, 700)])
    holes[1:] = False  # empty masks on the other frames: the crop follows the one hole there is
    crop, = region.plan(holes, "crop", 960, grow=10)
    assert covers(crop, (300, 500, 380, 700))
    assert region.plan(np.zeros((3, 720, 1280), bool), "crop", 960, grow=10) is None


def test_a_crop_larger_than_max_size_is_scaled_down_only_as_much_as_needed():
    crop, = region.plan(holes_with([(300, 200, 500, 1100)], size=(1080, 1920)), "crop", 960, grow=10)
    assert max(crop.working) <= 960 and max(crop.working) > 900
    assert crop.working != (crop.height, crop.width)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="region must be one of"):
        region.plan(holes_with([(0, 0, 8, 8)]), "box", 960, grow=1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """bikes at 640x272 (real footage, the clean truth) with an opaque object pasted on it."""
    clip = read_video(make_clip(tmp_path_factory.mktemp("region") / "bikes.mp4", frames=24, width=640, audio=False))
    clean = clip.frames
    holes = np.zeros(clean.shape[:3], bool)
    for t in range(len(clean)):
        holes[t, 150:190, 420 + t:500 + t] = True  # a logo-sized object drifting right
    dirty = clean.copy()
    dirty[holes] = (250, 30, 200)
    return clip, clean, dirty, holes


def test_crop_mode_leaves_every_pixel_outside_its_crops_bit_identical(scene):
    clip, _, dirty, holes = scene
    video = clip.__class__(frames=dirty, fps=clip.fps)
    settings = PRIOR_ONLY.replace(region="crop", max_size=320)
    result = Eraser(settings)(video, holes)
    assert "crop" in result.regions[0]
    crop, = region.plan(holes, "crop", 320, grow=2 * 9)
    outside = np.ones(holes.shape[1:], bool)
    outside[crop.rows, crop.cols] = False
    assert (result.frames[:, outside] == dirty[:, outside]).all()
    assert not (result.frames[holes] == dirty[holes]).all()


def test_crop_mode_fills_at_least_as_well_as_frame_mode_against_the_clean_footage(scene):
    clip, clean, dirty, holes = scene
    video = clip.__class__(frames=dirty, fps=clip.fps)

    def hole_psnr(mode: str) -> float:
        result = Eraser(PRIOR_ONLY.replace(region=mode, max_size=320))(video, holes)
        error = (result.frames[holes].astype(float) - clean[holes].astype(float)) ** 2
        return 10 * np.log10(255 ** 2 / error.mean())

    crop, frame = hole_psnr("crop"), hole_psnr("frame")
    assert crop >= frame  # measured: crop 24.1 dB, frame 21.4 dB (frame mode fills at half size)
