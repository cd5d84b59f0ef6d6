"""The writing stage in bounded memory: frame-by-frame paste, the released pixels unchanged."""
from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffueraser import Eraser, Settings
from diffueraser import masks as mask_ops
from diffueraser.engine import _Piece
from diffueraser.masks import blend_box, blend_masks, compose, dilate_masks, resize_frames, resize_masks, working_size
from diffueraser.media import read_video
from diffueraser.prior.propagation import PropagationPrior
from diffueraser.progress import WRITING
from footage import make_clip, moving_box_masks

PRIOR_ONLY = Settings(diffusion=False, prior="propagation", device="cpu")
EMPTY_FRAMES = (0, 3, 4)
"""Frames of the few-frame clip whose mask is empty."""
WRITING_PEAK_BOUND = 2.5
"""The writing stage's peak resident growth, in output arrays' bytes (measured on dev-2c: 1.26 with
the frame-by-frame paste; 18.3 with the whole-video float32 compose it replaced)."""


def released_paste(original: np.ndarray, layer: np.ndarray, used: np.ndarray, blended: bool) -> np.ndarray:
    """The writing stage as released, whole video at once: cv2 blur, float64 blend, float32 compose."""
    if layer.shape[1:3] != original.shape[1:3]:
        layer = resize_frames(layer, original.shape[1:3])
    hole = used.astype(np.uint8) * 255
    if blended:
        blur = np.stack([cv2.GaussianBlur(m, (21, 21), 0) for m in hole])
        blend = ((1 - (1 - hole / 255.0) * (1 - blur / 255.0)) * 255).astype(np.uint8)
    else:
        blend = hole
    weight = blend[..., None].astype(np.float32) / 255.0
    return (layer * weight + original * (1 - weight)).astype(np.uint8)


def paste_all(original: np.ndarray, layers: list[np.ndarray], used: np.ndarray, blended: bool) -> list[np.ndarray]:
    """The engine's frame-by-frame paste of whole-frame layers, over a whole video."""
    piece = _Piece(slice(None), slice(None), layers, used, original.shape[1:3])
    outs = [np.empty_like(original) for _ in layers]
    for t, frame in enumerate(original):
        for out, pasted in zip(outs, Eraser._paste_frame(frame, [piece], [piece.hole(t)], t, blended, len(layers))):
            out[t] = pasted
    return outs


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    """6 frames of bikes at 320x136, a moving box, some frames with no hole; working size 160x64."""
    clip = read_video(make_clip(tmp_path_factory.mktemp("memory") / "bikes6.mp4", frames=6, width=320, audio=False))
    masks = moving_box_masks(clip.num_frames, clip.height, clip.width, box=30, step=25)
    masks[list(EMPTY_FRAMES)] = False
    masks[5, -6:, :12] = True  # a hole touching the frame's corner: the blur reflects at the border
    return clip, masks


@pytest.mark.parametrize("blended", [True, False])
def test_engine_result_is_the_released_whole_video_compose_bit_for_bit(few, blended):
    clip, masks = few
    settings = PRIOR_ONLY.replace(max_size=160, blended=blended, region="frame")
    result = Eraser(settings)(clip, masks)

    # The same run done the straightforward way: whole-video arrays at every step.
    size = working_size(clip.height, clip.width, settings.max_size)
    assert size != (clip.height, clip.width)
    holes = resize_masks(masks, size)
    prior = PropagationPrior(mask_dilation=settings.mask_dilation)(resize_frames(clip.frames, size), holes)
    used = resize_masks(dilate_masks(holes, settings.mask_dilation), (clip.height, clip.width))
    blend = blend_masks(used) if blended else used.astype(np.uint8) * 255
    expected = compose(resize_frames(prior, (clip.height, clip.width)), clip.frames, blend)

    np.testing.assert_array_equal(result.masks, used)
    np.testing.assert_array_equal(result.frames, expected)
    np.testing.assert_array_equal(result.frames, released_paste(clip.frames, prior, used, blended))
    assert result.prior is result.frames  # prior only: the result is the prior's paste
    for t in EMPTY_FRAMES:
        np.testing.assert_array_equal(result.frames[t], clip.frames[t])
    assert not np.array_equal(result.frames[1], clip.frames[1])


def test_paste_of_two_layers_at_the_input_size_keeps_empty_frames_and_never_resizes(few, monkeypatch):
    clip, masks = few
    used = dilate_masks(masks, 4)
    rng = np.random.default_rng(0)
    generated, prior = (rng.integers(0, 256, clip.frames.shape, dtype=np.uint8) for _ in range(2))

    def no_resize(*args, **kwargs):
        raise AssertionError("resized at the input size")

    monkeypatch.setattr(mask_ops, "resize_frames", no_resize)
    out, prior_out = paste_all(clip.frames, [generated, prior], used, True)
    np.testing.assert_array_equal(out, released_paste(clip.frames, generated, used, True))
    np.testing.assert_array_equal(prior_out, released_paste(clip.frames, prior, used, True))
    for t in EMPTY_FRAMES:
        assert np.array_equal(out[t], clip.frames[t]) and np.array_equal(prior_out[t], clip.frames[t])


def test_empty_hole_frames_are_not_resized(few, monkeypatch):
    clip, masks = few
    small = resize_frames(clip.frames, (64, 160))
    calls = []
    real = mask_ops.resize_frames
    monkeypatch.setattr(mask_ops, "resize_frames", lambda f, size: calls.append(len(f)) or real(f, size))
    paste_all(clip.frames, [small], masks, True)
    assert calls == [1] * (len(masks) - len(EMPTY_FRAMES))


def test_blend_box_is_the_whole_frame_blend_inside_and_zero_outside():
    rng = np.random.default_rng(1)
    cases = [np.zeros((50, 70), bool) for _ in range(5)]
    cases[0][20:24, 30:33] = True  # far from the borders
    cases[1][:3, :5] = True  # a corner
    cases[2][10:40, 60:] = True  # the right border
    cases[3] = rng.random((50, 70)) < 0.002  # scattered
    cases += [rng.random((7, 9)) < 0.1, np.ones((3, 4), bool)]  # frames smaller than the blur
    cases[3][49, 0] = cases[4][3, 8] = True
    for hole in cases:
        for blended in (True, False):
            whole = blend_masks(hole[None])[0] if blended else hole.astype(np.uint8) * 255
            rows, cols, values = blend_box(hole, blended)
            assert values.dtype == np.uint8
            np.testing.assert_array_equal(values, whole[rows, cols])
            outside = whole.copy()
            outside[rows, cols] = 0
            assert not outside.any()
    assert blend_box(np.zeros((50, 70), bool)) is None


@pytest.mark.parametrize("shape, size", [((2, 1080, 1920), (536, 960)), ((2, 536, 960), (720, 1280)),
                                         ((3, 37, 61), (18, 30)), ((3, 17, 5), (40, 64)), ((1, 1, 9), (8, 8))])
def test_resize_frames_gives_the_values_of_the_released_nchw_call(shape, size):
    rng = np.random.default_rng(3)
    frames = np.clip(rng.normal(128, 60, (*shape, 3)).cumsum(2) / 4 + 64, 0, 255).astype(np.uint8)  # smooth and noisy
    nchw = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    released = F.interpolate(nchw, size=size, mode="bicubic", antialias=True, align_corners=False)
    np.testing.assert_array_equal(resize_frames(frames, size), released.permute(0, 2, 3, 1).numpy())


def test_chunked_resize_compose_and_blend_equal_one_chunk(monkeypatch):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (5, 30, 44, 3), dtype=np.uint8)
    other = rng.integers(0, 256, frames.shape, dtype=np.uint8)
    holes = rng.random((5, 30, 44)) < 0.01
    blend = blend_masks(holes)
    one_chunk = resize_frames(frames, (52, 80)), compose(frames, other, blend)
    monkeypatch.setattr(mask_ops, "CHUNK_BYTES", 1)  # one frame per chunk
    np.testing.assert_array_equal(resize_frames(frames, (52, 80)), one_chunk[0])
    np.testing.assert_array_equal(compose(frames, other, blend), one_chunk[1])
    whole = released_paste(other, frames, holes, True)
    np.testing.assert_array_equal(one_chunk[1], whole)
    np.testing.assert_array_equal(compose(frames[2], other[2], blend[2]), whole[2])  # one frame


# ---- memory ---------------------------------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def writing_stage_peak(eraser: Eraser, clip, masks) -> tuple[int, object]:
    """Growth of resident memory at its peak during the writing stage (kernel's VmHWM, reset as
    the stage starts, after handing freed heap back), and the result."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    marks = {}

    def progress(report) -> None:
        if report.stage == WRITING and report.done == 0:
            libc.malloc_trim(0)
            _can_reset_peak()
            marks["start"] = _status("VmRSS")
        elif report.stage == WRITING and report.done == report.total:
            marks["peak"] = _status("VmHWM")

    result = eraser(clip, masks, progress=progress)
    return marks["peak"] - marks["start"], result


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists() or not _can_reset_peak(),
                    reason="needs Linux's resettable peak resident memory")
def test_writing_stage_peak_memory_is_about_the_output(tmp_path):
    clip = read_video(make_clip(tmp_path / "bbb40.mp4", "bigbuckbunny", frames=40, width=640, audio=False))
    assert clip.frames.shape == (40, 360, 640, 3)
    masks = moving_box_masks(clip.num_frames, clip.height, clip.width, box=72, step=8)
    peak, result = writing_stage_peak(Eraser(PRIOR_ONLY), clip, masks)
    assert result.prior is result.frames
    output = result.frames.nbytes
    assert peak < WRITING_PEAK_BOUND * output, f"writing stage grew {peak / output:.2f}x the output"
