"""How the prior's latents become the sampler's starting point.

Two ways, selected by `Settings.prior_injection`:

- "released": what the released weights were tuned with. The released code calls a UniPC
  scheduler's `add_noise(latents, noise, t=0)`; UniPC looks timestep 0 up in its descending
  timestep list and so uses the noise level of training step 999 (reference README §5.2):
  `√ᾱ_999 · prior + √(1 − ᾱ_999) · noise` ≈ `0.068265 · prior + 0.997667 · noise`.
- "ddim": deterministic DDIM inversion of the prior latents from t = 0 up to the first sampling
  timestep, with the denoiser itself as the noise predictor (what the paper describes).
  In half precision its error is bounded, not removed: the walk runs in float32, but the rounding
  of the denoiser's own half-precision predictions during inversion is divided by √ᾱ_999 ≈ 0.068
  at the first sampling step, about 15x; tests/test_half_precision.py and test_engine_half.py
  bound it (measured: 30-60x the released injection's error on pseudo-weights). Run in float32
  (`dtype="float32"`) where that matters.

Noise is one block of `clip_length` frames, drawn once and tiled over the video (frame i uses
block frame i mod clip_length), as released.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

__all__ = [
    "RELEASED_NOISE_STEP",
    "draw_clip_noise",
    "tile_noise",
    "released_coefficients",
    "inject_released",
    "inversion_timesteps",
    "ddim_step",
    "ddim_invert",
    "ddim_sample",
]

LATENT_CHANNELS = 4
RELEASED_NOISE_STEP = -1
"""Index into the training schedule whose noise level the released injection uses: the last (999)."""

EpsFn = Callable[[torch.Tensor, int, int], torch.Tensor]
"""`eps_fn(latents, timestep, step_index) -> predicted noise` over all frames."""


def draw_clip_noise(
    clip_length: int, height: int, width: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """One block of standard normal noise `[clip_length, 4, height, width]` (float32, on the generator's device)."""
    device = generator.device if generator is not None else "cpu"
    shape = (clip_length, LATENT_CHANNELS, height, width)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)


def tile_noise(noise: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Noise for `num_frames` frames: frame i gets `noise[i mod len(noise)]`."""
    reps = math.ceil(num_frames / noise.shape[0])
    return noise.repeat(reps, *([1] * (noise.dim() - 1)))[:num_frames]


def released_coefficients(alphas_cumprod: torch.Tensor) -> tuple[float, float]:
    """(prior weight, noise weight) of the released injection, from the training noise schedule."""
    alpha_bar = float(alphas_cumprod[RELEASED_NOISE_STEP])
    return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)


def inject_released(latents: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The released starting latents `a · latents + s · noise` (noise already tiled to the frames)."""
    a, s = released_coefficients(alphas_cumprod)
    return a * latents + s * noise.to(latents)


def inversion_timesteps(first_timestep: int, steps: int) -> list[int]:
    """`steps + 1` evenly spaced timesteps from 0 up to `first_timestep` (the sampler's first)."""
    if steps < 1:
        raise ValueError(f"DDIM inversion needs at least one step, got {steps}")
    return [round(first_timestep * k / steps) for k in range(steps + 1)]


def ddim_step(
    x: torch.Tensor, eps: torch.Tensor, alpha_bar_from: float, alpha_bar_to: float
) -> torch.Tensor:
    """Move `x` deterministically from noise level ᾱ_from to ᾱ_to along the predicted noise.

    `x0 = (x − √(1−ᾱ_from)·ε)/√ᾱ_from`, result `√ᾱ_to·x0 + √(1−ᾱ_to)·ε`; the same formula inverts
    (ᾱ decreasing) and samples (ᾱ increasing).
    """
    x0 = (x - math.sqrt(1.0 - alpha_bar_from) * eps) / math.sqrt(alpha_bar_from)
    return math.sqrt(alpha_bar_to) * x0 + math.sqrt(1.0 - alpha_bar_to) * eps


def _walk(
    latents: torch.Tensor, eps_fn: EpsFn, alphas_cumprod: torch.Tensor, timesteps: Sequence[int]
) -> torch.Tensor:
    """DDIM steps along `timesteps`, predicting the noise at the start of each step.

    The latents and their updates are float32 (or wider) whatever `eps_fn` computes in; the
    result has the dtype of `latents`.
    """
    work = torch.promote_types(latents.dtype, torch.float32)
    x = latents.to(work)
    for i, (t_from, t_to) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        eps = eps_fn(x, int(t_from), i).to(work)
        x = ddim_step(x, eps, float(alphas_cumprod[t_from]), float(alphas_cumprod[t_to]))
    return x.to(latents.dtype)


def ddim_invert(
    latents: torch.Tensor, eps_fn: EpsFn, alphas_cumprod: torch.Tensor, first_timestep: int, steps: int
) -> torch.Tensor:
    """Deterministic DDIM inversion of clean `latents` (taken as the t = 0 sample) to `first_timestep`."""
    return _walk(latents, eps_fn, alphas_cumprod, inversion_timesteps(first_timestep, steps))


def ddim_sample(
    latents: torch.Tensor, eps_fn: EpsFn, alphas_cumprod: torch.Tensor, first_timestep: int, steps: int
) -> torch.Tensor:
    """The DDIM sampler on the same grid as `ddim_invert`, from `first_timestep` back to t = 0."""
    return _walk(latents, eps_fn, alphas_cumprod, inversion_timesteps(first_timestep, steps)[::-1])
