"""Sampler maths without the networks: the released TCD set-up and the prior injections."""
import math

import pytest
import torch
from reference import load_json

from diffueraser.diffusion.injection import (
    ddim_invert,
    ddim_sample,
    ddim_step,
    draw_clip_noise,
    inject_released,
    inversion_timesteps,
    released_coefficients,
    tile_noise,
)
from diffueraser.diffusion.scheduler import ETA, make_scheduler

SCHEDULE = load_json("parity/schedule.json")
INJECTION = SCHEDULE["prior_injection_add_noise_t0"]
TCD = SCHEDULE["tcd"]
ALPHAS_CUMPROD = make_scheduler().alphas_cumprod


def test_tcd_scheduler_is_configured_as_released():
    scheduler = make_scheduler()
    for key, value in TCD["config"].items():
        if not key.startswith("_"):
            assert scheduler.config[key] == value, key
    assert scheduler.init_noise_sigma == TCD["init_noise_sigma"]


@pytest.mark.parametrize("steps", sorted(int(n) for n in TCD["results"]))
def test_tcd_timesteps_and_steps_on_fixed_inputs_equal_released(steps):
    expected = TCD["results"][str(steps)]
    scheduler = make_scheduler()
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == expected["timesteps"]
    shape = TCD["step_inputs"]["shape"]
    sample = torch.tensor(TCD["step_inputs"]["sample"]).reshape(shape)
    for i, (t, step) in enumerate(zip(scheduler.timesteps, expected["steps_eta0"])):
        assert int(t) == step["t"]
        assert float(scheduler.alphas_cumprod[t]) == pytest.approx(step["alphas_cumprod_t"], rel=1e-7)
        eps = torch.tensor(TCD["step_inputs"]["model_output_per_step"][i]).reshape(shape)
        sample = scheduler.step(eps, t, sample, eta=ETA, return_dict=False)[0]
        ref = torch.tensor(step["prev_sample"]).reshape(shape)
        torch.testing.assert_close(sample, ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


def test_released_coefficients_come_from_the_sd15_betas_at_step_999():
    alpha, sigma = released_coefficients(ALPHAS_CUMPROD)
    assert alpha == pytest.approx(INJECTION["unipc"]["alpha"], rel=1e-6)
    assert sigma == pytest.approx(INJECTION["unipc"]["sigma"], rel=1e-6)
    assert alpha == pytest.approx(INJECTION["reference_values"]["sqrt_alphas_cumprod_999"], rel=1e-7)
    assert (round(alpha, 6), round(sigma, 6)) == (0.068265, 0.997667)


def test_released_injection_mixes_prior_and_noise_as_the_fixture():
    prior, noise = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    mixed = inject_released(prior, noise, ALPHAS_CUMPROD)
    expected = INJECTION["unipc"]["alpha"] * prior + INJECTION["unipc"]["sigma"] * noise
    torch.testing.assert_close(mixed, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("frames", [1, 5, 22, 23, 50])
def test_one_noise_block_is_tiled_over_the_frames(frames):
    block = torch.randn(22, 4, 3, 5)
    tiled = tile_noise(block, frames)
    assert tiled.shape == (frames, 4, 3, 5)
    for i in range(frames):
        assert torch.equal(tiled[i], block[i % 22])


def test_noise_block_is_reproducible_from_the_generator():
    a = draw_clip_noise(22, 6, 7, torch.Generator().manual_seed(3))
    b = draw_clip_noise(22, 6, 7, torch.Generator().manual_seed(3))
    c = draw_clip_noise(22, 6, 7, torch.Generator().manual_seed(4))
    assert a.shape == (22, 4, 6, 7) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddim_step_back_with_the_same_noise_undoes_it():
    x, eps = torch.randn(2, 4, 3, 3, dtype=torch.float64), torch.randn(2, 4, 3, 3, dtype=torch.float64)
    up = ddim_step(x, eps, float(ALPHAS_CUMPROD[0]), float(ALPHAS_CUMPROD[999]))
    torch.testing.assert_close(ddim_step(up, eps, float(ALPHAS_CUMPROD[999]), float(ALPHAS_CUMPROD[0])), x)
    # with clean latents and zero noise, the step only rescales
    torch.testing.assert_close(
        ddim_step(x, torch.zeros_like(x), 0.64, 0.25), x * math.sqrt(0.25) / math.sqrt(0.64)
    )


def test_inversion_grid_runs_from_zero_to_the_first_sampling_timestep():
    assert inversion_timesteps(999, 4) == [0, 250, 500, 749, 999]
    assert inversion_timesteps(999, 1) == [0, 999]
    with pytest.raises(ValueError, match="at least one step"):
        inversion_timesteps(999, 0)


def _gaussian_score(mean: float, std: float):
    """The exact noise prediction for data ~ N(mean, std²): DDIM then follows the true probability-flow ODE."""

    def eps(x: torch.Tensor, t: int, _: int) -> torch.Tensor:
        a = float(ALPHAS_CUMPROD[t])
        return math.sqrt(1 - a) * (x - math.sqrt(a) * mean) / (a * std**2 + 1 - a)

    return eps


def test_ddim_inversion_round_trip_converges_at_first_order_with_an_exact_score():
    eps = _gaussian_score(0.3, 0.5)
    x0 = 0.3 + 0.5 * torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors, stds = [], []
    for steps in (8, 16, 32, 64):
        inverted = ddim_invert(x0, eps, ALPHAS_CUMPROD, 999, steps)
        back = ddim_sample(inverted, eps, ALPHAS_CUMPROD, 999, steps)
        errors.append(float((back - x0).abs().max()))
        stds.append(float(inverted.std()))
    # measured: 0.67, 0.40, 0.22, 0.12 — halving with each doubling of the steps
    assert all(0.45 < later / earlier < 0.7 for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.15
    # the inverted latents approach the unit-variance noise the sampler expects at t = 999
    assert stds == sorted(stds) and 0.9 < stds[-1] < 1.05, stds
