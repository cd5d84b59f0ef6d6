"""Working size and mask processing against the released code (reference README §5.1, masks.npz)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

from diffueraser.masks import (
    blend_masks,
    blend_weights,
    compose,
    dilate_masks,
    gaussian_blur_u8,
    masked_frames,
    propainter_masks,
    resize_frames,
    resize_masks,
    working_size,
)
from reference import load_npz

DILATIONS = (0, 4, 8)


@pytest.fixture(scope="module")
def released():
    arrays, meta = load_npz("masks")
    return arrays, meta


def random_masks(rng, shape, density):
    return rng.random(shape) < density


@pytest.mark.parametrize(
    "height, width, max_size, expected",
    [
        (540, 960, 960, (536, 960)),  # fits: only floored to multiples of 8
        (1080, 1920, 960, (536, 960)),
        (720, 1280, 960, (536, 960)),
        (2160, 3840, 960, (536, 960)),
        (272, 640, 960, (272, 640)),  # bikes
        (144, 176, 960, (144, 176)),  # released refuses < 256 px; we keep it
        (1920, 1080, 960, (960, 536)),  # portrait
        (1000, 1500, 960, (640, 960)),
        (481, 1283, 960, (352, 960)),
        (100, 1000, 960, (96, 952)),  # released quirk: int(1000 / (1000/960)) = 959
        (1080, 1920, 512, (288, 512)),
        (5, 3, 960, (8, 8)),  # tiny: never below 8 px
    ],
)
def test_working_size_follows_released_rule(height, width, max_size, expected):
    assert working_size(height, width, max_size) == expected


def test_resize_frames_is_pil_bicubic_within_rounding():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (2, 34, 80, 3), dtype=np.uint8)
    frames = np.stack([np.asarray(Image.fromarray(f).resize((640, 272), Image.BILINEAR)) for f in base])
    for size in [(136, 320), (272, 640), (200, 480), (544, 1280)]:
        ours = resize_frames(frames, size)
        pil = np.stack([np.asarray(Image.fromarray(f).resize(size[::-1])) for f in frames])
        diff = np.abs(ours.astype(int) - pil)
        assert ours.shape == (2, *size, 3) and ours.dtype == np.uint8
        assert diff.max() <= 2 and (diff > 0).mean() < 0.02, (size, diff.max(), (diff > 0).mean())
    assert np.array_equal(resize_frames(frames, (272, 640)), frames)


def test_resize_masks_is_pil_nearest():
    rng = np.random.default_rng(1)
    masks = random_masks(rng, (3, 37, 61), 0.3)
    for size in [(18, 30), (74, 122), (40, 64), (37, 61)]:
        ours = resize_masks(masks, size)
        pil = np.stack([np.asarray(Image.fromarray(m).resize(size[::-1], Image.NEAREST)) for m in masks])
        assert np.array_equal(ours, pil), size


@pytest.mark.parametrize("iterations", DILATIONS)
def test_dilate_masks_matches_released_fixture(released, iterations):
    arrays, meta = released
    assert sorted(np.unique(arrays["mask_input"])) == meta["input_mask_values"] == [0, 1, 128, 200, 255]
    mask = dilate_masks(arrays["mask_input"], iterations)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask.astype(np.uint8) * 255, arrays[f"diffueraser_mask_dil{iterations}"])
    np.testing.assert_array_equal(masked_frames(arrays["frame_rgb"], mask),
                                  arrays[f"diffueraser_masked_image_dil{iterations}"])


def test_dilate_masks_equals_cv2_default_border_on_random_masks():
    rng = np.random.default_rng(2)
    kernel = np.ones((3, 3), np.uint8)
    for shape in [(1, 1), (2, 9), (7, 5), (30, 41)]:
        masks = random_masks(rng, (4, *shape), 0.6)
        for iterations in (0, 1, 3, 8):
            ours = dilate_masks(masks, iterations)
            for frame, mask in zip(masks, ours):
                expected = cv2.dilate(cv2.erode(frame.astype(np.uint8), kernel), kernel, iterations=iterations)
                np.testing.assert_array_equal(mask, expected.astype(bool), err_msg=f"{shape} x{iterations}")


@pytest.mark.parametrize("iterations", DILATIONS)
def test_propainter_masks_match_released_fixture(released, iterations):
    arrays, _ = released
    mask = propainter_masks(arrays["mask_input"], iterations)
    np.testing.assert_array_equal(mask.astype(np.uint8) * 255, arrays[f"propainter_flow_mask_dil{iterations}"])
    np.testing.assert_array_equal(mask.astype(np.uint8) * 255, arrays[f"propainter_mask_dilated_dil{iterations}"])


def test_propainter_masks_equal_scipy_cross_dilation_on_random_masks():
    rng = np.random.default_rng(3)
    masks = random_masks(rng, (3, 23, 31), 0.02)
    for iterations in (1, 2, 5, 12):
        ours = propainter_masks(masks, iterations)
        for frame, mask in zip(masks, ours):
            np.testing.assert_array_equal(mask, scipy.ndimage.binary_dilation(frame, iterations=iterations))


@pytest.mark.parametrize("iterations", DILATIONS)
def test_blend_masks_match_released_fixture(released, iterations):
    arrays, _ = released
    mask_u8 = arrays[f"diffueraser_mask_dil{iterations}"]
    np.testing.assert_array_equal(gaussian_blur_u8(mask_u8) / 255.0, arrays[f"blur_dil{iterations}"])
    dilated = dilate_masks(arrays["mask_input"], iterations)
    weights = blend_weights(dilated)
    assert weights.dtype == np.float64
    assert np.abs(weights - arrays[f"blend_mask_float_dil{iterations}"]).max() <= 1e-6
    np.testing.assert_array_equal(blend_masks(dilated), arrays[f"blend_mask_uint8_dil{iterations}"])


def test_gaussian_blur_equals_cv2_on_random_images_of_any_size():
    rng = np.random.default_rng(4)
    for shape in [(1, 1), (1, 7), (3, 5), (21, 21), (40, 29), (2, 60)]:
        images = [rng.integers(0, 256, shape, dtype=np.uint8), (random_masks(rng, shape, 0.05) * 255).astype(np.uint8)]
        for image in images:
            expected = cv2.GaussianBlur(image, (21, 21), 0)
            np.testing.assert_array_equal(gaussian_blur_u8(image), expected, err_msg=str(shape))


def test_compose_is_released_formula_and_keeps_original_outside_the_blend():
    rng = np.random.default_rng(5)
    generated = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    original = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    masks = np.zeros((3, 40, 56), bool)
    masks[:, 12:22, 20:30] = True
    blend = blend_masks(dilate_masks(masks, 2))
    out = compose(generated, original, blend)
    weight = blend[..., None].astype(np.float32) / 255.0
    expected = (generated * weight + original * (1 - weight)).astype(np.uint8)  # released arithmetic
    np.testing.assert_array_equal(out, expected)
    assert 0 < (blend == 0).mean() < 1 and (blend == 255).any()
    np.testing.assert_array_equal(out[blend == 0], original[blend == 0])
    np.testing.assert_array_equal(out[blend == 255], generated[blend == 255])


def test_torch_tensors_give_the_numpy_results_batched_over_frames():
    rng = np.random.default_rng(6)
    masks = random_masks(rng, (5, 33, 47), 0.03)
    frames = rng.integers(0, 256, (5, 33, 47, 3), dtype=np.uint8)
    dilated = dilate_masks(torch.from_numpy(masks), 3)
    assert isinstance(dilated, torch.Tensor) and dilated.dtype == torch.bool
    np.testing.assert_array_equal(dilated.numpy(), dilate_masks(masks, 3))
    per_frame = np.stack([blend_masks(m[None])[0] for m in dilated.numpy()])
    blend = blend_masks(dilated)
    np.testing.assert_array_equal(blend.numpy(), per_frame)
    np.testing.assert_array_equal(propainter_masks(torch.from_numpy(masks), 4).numpy(), propainter_masks(masks, 4))
    out = compose(torch.from_numpy(frames), torch.from_numpy(frames[::-1].copy()), blend)
    np.testing.assert_array_equal(out.numpy(), compose(frames, frames[::-1], blend.numpy()))


def test_empty_masks_stay_empty_and_blend_to_zero():
    masks = np.zeros((2, 16, 24), bool)
    assert not dilate_masks(masks, 8).any()
    assert not blend_masks(masks).any()
    assert not propainter_masks(masks, 8).any()
