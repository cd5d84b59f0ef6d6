"""The weight-free propagation prior: shapes, untouched pixels, recovery of moving content,
scene cuts, static masks, edge cases, progress."""
import cv2
import numpy as np
import pytest

from diffueraser.errors import InputError
from diffueraser.prior.flow import smooth_fill
from diffueraser.masks import propainter_masks as dilate_masks
from diffueraser.prior.propagation import PropagationPrior, detect_cuts

H, W = 64, 96


def texture(seed: int, height: int = H, width: int = W, blur: int = 5) -> np.ndarray:
    """A smooth random colour texture, uint8 [height, width, 3]."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (blur, blur), 0)


def panning(seed: int, count: int, speed: float, blur: int = 5) -> np.ndarray:
    """`count` frames of a texture moving left by `speed` pixels per frame (sub-pixel allowed)."""
    big = texture(seed, H, W + int(np.ceil(speed * count)) + 20, blur).astype(np.float32)
    frames = [cv2.warpAffine(big, np.float32([[1, 0, -(10 + speed * t)], [0, 1, 0]]), (W, H), flags=cv2.INTER_CUBIC)
              for t in range(count)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b)[where] ** 2).mean()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def moving_box(count: int, step: int = 4) -> np.ndarray:
    masks = np.zeros((count, H, W), bool)
    for t in range(count):
        masks[t, 22:42, 16 + step * t:40 + step * t] = True
    return masks


def with_object(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The frames with a magenta object painted in the masks: the prior must not look at it."""
    painted = frames.copy()
    painted[masks] = (255, 0, 255)
    return painted


def test_dilation_is_propainter_cross():
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 4, 4] = True
    grown = dilate_masks(mask, 2)[0]
    y, x = np.mgrid[:9, :9]
    assert np.array_equal(grown, np.abs(y - 4) + np.abs(x - 4) <= 2)  # a diamond, not a square
    assert np.array_equal(dilate_masks(mask, 0), mask)


def test_output_shape_dtype_and_pixels_outside_dilated_mask_unchanged():
    frames = panning(0, 8, 2.0)
    masks = moving_box(8)
    painted = with_object(frames, masks)
    out = PropagationPrior(mask_dilation=3)(painted, masks)
    assert out.shape == frames.shape and out.dtype == np.uint8
    holes = dilate_masks(masks, 3)
    assert np.array_equal(out[~holes], painted[~holes])
    assert not np.any(np.all(out[holes] == (255, 0, 255), axis=-1))  # the object is gone


def test_translating_texture_under_moving_mask_is_recovered():
    frames = panning(1, 12, 2.0)
    masks = moving_box(12)
    out = PropagationPrior()(with_object(frames, masks), masks)
    holes = dilate_masks(masks, 8)
    assert psnr(out, frames, holes) > 40.0


def test_sub_pixel_motion_reveals_the_border_of_a_static_hole():
    frames = panning(3, 16, 0.4, blur=7)  # 0.4 px per frame: a nearest-pixel chain would never move
    masks = np.zeros((16, H, W), bool)
    masks[:, 24:40, 36:60] = True
    out = PropagationPrior(mask_dilation=0)(with_object(frames, masks), masks)
    band = np.zeros((H, W), bool)
    band[24:40, 36:38] = True  # two columns on each side, uncovered by the motion within the clip
    band[24:40, 58:60] = True
    telea = cv2.inpaint(with_object(frames, masks)[8], masks[8].astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    assert psnr(out[8], frames[8], band) > 33.0
    assert psnr(out[8], frames[8], band) > psnr(telea, frames[8], band) + 6.0


def two_shots() -> tuple[np.ndarray, np.ndarray]:
    """A reddish panning shot, then a reddish-free one; the region is masked after the cut only,
    so shot one shows exactly what shot two hides."""
    first, second = panning(4, 6, 2.0), panning(5, 6, 2.0)
    first[..., 1:] //= 6
    second[..., 0] //= 6
    masks = np.zeros((12, H, W), bool)
    masks[6:, 20:44, 30:60] = True
    return np.concatenate([first, second]), masks


def test_scene_cut_is_detected():
    frames, masks = two_shots()
    assert detect_cuts(frames, dilate_masks(masks, 8)) == [6]
    assert detect_cuts(panning(6, 10, 3.0), np.zeros((10, H, W), bool)) == []


def test_no_propagation_across_a_scene_cut():
    frames, masks = two_shots()
    holes = dilate_masks(masks, 8)
    red_in_second_shot = frames[6:, ..., 0].max()
    out = PropagationPrior()(with_object(frames, masks), masks)
    assert out[6:][holes[6:]][:, 0].max() <= red_in_second_shot
    crossing = PropagationPrior(cut_threshold=1e9)(with_object(frames, masks), masks)
    assert crossing[6:][holes[6:]][:, 0].mean() > 2 * red_in_second_shot  # what the detection prevents


def test_static_mask_on_still_scene_gives_a_steady_fill():
    rng = np.random.default_rng(7)
    clean = texture(8, blur=9).astype(np.float64)
    frames = np.clip(clean + rng.normal(0, 3, (12, H, W, 3)), 0, 255).astype(np.uint8)  # sensor noise
    masks = np.zeros((12, H, W), bool)
    masks[:, 24:40, 36:60] = True
    out = PropagationPrior()(with_object(frames, masks), masks)
    holes = dilate_masks(masks, 8)
    fill_change = np.abs(np.diff(out.astype(np.float64), axis=0))[:, holes[0]].mean()
    noise_change = np.abs(np.diff(frames.astype(np.float64), axis=0))[:, holes[0]].mean()
    assert fill_change < 0.35 * noise_change
    assert psnr(out, np.broadcast_to(clean, out.shape), holes) > 18.0  # a plausible fill, not a flat patch


def test_single_frame_and_two_frames():
    frame = texture(9)[None]
    mask = np.zeros((1, H, W), bool)
    mask[0, 20:40, 30:60] = True
    out = PropagationPrior()(with_object(frame, mask), mask)
    holes = dilate_masks(mask, 8)
    assert out.shape == frame.shape
    assert np.array_equal(out[~holes], frame[~holes])
    assert not np.any(np.all(out[holes] == (255, 0, 255), axis=-1))

    frames = panning(10, 2, 6.0)
    masks = np.zeros((2, H, W), bool)
    masks[0, 22:42, 20:44] = True  # frame 1 shows what frame 0 hides
    out = PropagationPrior(mask_dilation=2)(with_object(frames, masks), masks)
    assert psnr(out[0], frames[0], dilate_masks(masks, 2)[0]) > 35.0


def test_all_hole_frames_do_not_crash():
    frames = panning(11, 6, 2.0)
    masks = np.zeros((6, H, W), bool)
    masks[2] = True
    out = PropagationPrior()(frames, masks)
    assert out.shape == frames.shape
    everything = PropagationPrior()(frames, np.ones((6, H, W), bool))
    assert everything.shape == frames.shape and everything.dtype == np.uint8


def test_progress_is_monotone_and_reaches_the_total():
    frames, masks = two_shots()
    seen = []
    PropagationPrior()(frames, masks, progress=seen.append)
    assert {p.stage for p in seen} == {"prior"} and len({p.total for p in seen}) == 1
    done = [p.done for p in seen]
    assert done[0] == 0 and done[-1] == seen[-1].total
    assert all(0 <= a <= b for a, b in zip(done, done[1:]))
    assert seen[-1].detail == "shot 2 of 2"


def test_bad_inputs_are_refused_with_a_clear_message():
    prior = PropagationPrior()
    with pytest.raises(InputError, match="uint8"):
        prior(np.zeros((2, H, W, 3), np.float32), np.zeros((2, H, W), bool))
    with pytest.raises(InputError, match="masks must be"):
        prior(np.zeros((2, H, W, 3), np.uint8), np.zeros((3, H, W), bool))
    with pytest.raises(InputError, match="DIS preset"):
        PropagationPrior(dis_preset="slow")


def test_smooth_fill_continues_a_linear_field():
    y, x = np.mgrid[:50, :70].astype(np.float32)
    ramp = 0.5 * x + 0.3 * y
    hole = np.zeros((50, 70), bool)
    hole[15:35, 20:50] = True
    filled = smooth_fill(ramp, hole)
    assert np.array_equal(filled[~hole], ramp[~hole])
    assert np.abs(filled - ramp)[hole].max() < 0.05 * np.ptp(ramp)
