"""The engine end to end in float16 and bfloat16 against float32, on the CPU, same seed.

Tiny checkpoints written in the released formats, loaded by the project's own loaders in each
dtype; a clip of more than 50 frames so ProPainter's pre-propagation runs; both priors and both
injections. What a CPU run cannot stand in for (CUDA kernels round and accumulate differently)
is said in `test_half_precision.py`; float16 runs use its `gpu_like_float16` (float16 products
accumulated in float32, as GPU kernels do), since the CPU has no fast float16 kernels.
The tolerances are about twice what was measured here (in the comments).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from footage import make_clip, moving_box_masks
from test_half_precision import gpu_like_float16  # noqa: F401 - a fixture

from diffueraser import Eraser, Settings
from diffueraser.masks import dilate_masks, resize_masks, working_size
from diffueraser.media import read_video

FRAMES = 52  # over ProPainter's sub-video length of 50: pre-propagation runs
CASES = [("propainter", "released"), ("propagation", "ddim")]  # each dtype sees both priors and both injections
# (prior, injection, dtype): largest mean |difference| from float32 in the filled area, uint8 levels;
# measured on dev-2c: 0.04 (max 1), 0.35 (max 8), 2.11 (max 84), 11.4 (max 255). DDIM inversion
# amplifies the denoiser's half-precision rounding (diffusion/injection.py says why).
MEAN_TOLERANCE = {
    ("propainter", "released", "float16"): 0.1, ("propainter", "released", "bfloat16"): 0.8,
    ("propagation", "ddim", "float16"): 5.0, ("propagation", "ddim", "bfloat16"): 25.0,
}
PRIOR_MEAN_TOLERANCE = {"float16": 0.1, "bfloat16": 0.5}  # measured 0.04 (max 2) and 0.21 (max 3)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from tiny_checkpoints import write_tiny_weights

    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return read_video(make_clip(tmp_path_factory.mktemp("half") / "bikes52.mp4", frames=FRAMES, width=96))


@pytest.fixture(scope="module")
def masks(clip):
    return moving_box_masks(clip.num_frames, clip.height, clip.width, box=12, step=1)


def run(weights, clip, masks, prior: str, injection: str, dtype: str):
    """One erase with every network loaded in `dtype` by the project's loaders."""
    from diffueraser.weights import load_diffuser, load_propainter, resolve

    settings = Settings(prior=prior, prior_injection=injection, device="cpu", dtype=dtype, seed=5, raft_iters=2,
                        clip_length=8)
    torch_dtype = getattr(torch, dtype)
    paths = resolve(["propainter", "denoiser", "text", "vae", "pcm"], weights, local_files_only=True)
    eraser = Eraser(settings, propainter=load_propainter(paths, "cpu", torch_dtype),
                    diffuser=load_diffuser(paths, "cpu", torch_dtype, weights, True))
    assert eraser.diffuser.unet.dtype == torch_dtype
    return eraser(clip, masks)


_float32: dict = {}


def float32_result(weights, clip, masks, prior, injection):
    if (prior, injection) not in _float32:
        _float32[prior, injection] = run(weights, clip, masks, prior, injection, "float32")
    return _float32[prior, injection]


def filled_area(clip, masks, settings: Settings) -> np.ndarray:
    size = working_size(clip.height, clip.width, settings.max_size)
    hole = dilate_masks(resize_masks(masks, size), settings.mask_dilation)
    return dilate_masks(resize_masks(hole, (clip.height, clip.width)), 11)


@pytest.mark.parametrize("prior, injection", CASES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_engine_matches_float32_on_the_same_seed(request, tiny_weights, clip, masks, prior,
                                                                injection, dtype):
    if dtype == "float16":
        request.getfixturevalue("gpu_like_float16")
    reference = float32_result(tiny_weights, clip, masks, prior, injection)
    result = run(tiny_weights, clip, masks, prior, injection, dtype)

    assert result.seed == reference.seed == 5
    assert result.frames.shape == reference.frames.shape == clip.frames.shape
    area = filled_area(clip, masks, Settings())
    assert np.array_equal(result.frames[~area], clip.frames[~area])  # untouched, whatever the dtype
    diff = np.abs(result.frames.astype(np.int16) - reference.frames)[area]
    prior_diff = np.abs(result.prior.astype(np.int16) - reference.prior)[area]
    print(f"{prior}/{injection}/{dtype}: result mean {diff.mean():.2f} max {diff.max()}, "
          f"prior mean {prior_diff.mean():.2f} max {prior_diff.max()}")
    assert diff.mean() <= MEAN_TOLERANCE[prior, injection, dtype]
    assert prior_diff.mean() <= PRIOR_MEAN_TOLERANCE[dtype]
    # Not a constant or a blank: the half result follows the float32 one pixel by pixel.
    assert np.corrcoef(result.frames[area].ravel(), reference.frames[area].ravel())[0, 1] > 0.9
