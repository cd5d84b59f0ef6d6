"""How much work a run is, and how long it takes on a kind of device: the one cost model.

The work is counted in the units the method actually spends (VAE frames, BrushNet + unet_main
frame passes, prior frames), from the frame count, working size, steps and window layout; the
rates turning work into seconds come from `benchmarks/RESULTS.md`. The app uses it for ZeroGPU's
duration and for the time shown before a run.
"""
from __future__ import annotations

from dataclasses import dataclass

from .masks import working_size
from .settings import Settings

# Floating-point work per megapixel of working-size frame (torch's FLOP counter on the full-size
# architectures, benchmarks/arithmetic.py: 778 / 1761 / 1313 GFLOP per 576x320 frame).
VAE_ENCODE_GFLOP_PER_MP = 4220.0
VAE_DECODE_GFLOP_PER_MP = 9550.0
DENOISER_GFLOP_PER_MP = 7120.0

# Sustained rates. CPU: the whole-method run on dev-2c (242 GFLOP/s in float32). CUDA: the released
# code's 175 s for 250 frames at 960x540 on an L20, about 4.9 PFLOP of work: ~30 TFLOP/s in float16.
GFLOP_PER_S = {"cpu": 242.0, "cuda": 30_000.0}
# Prior seconds per megapixel of working-size frame (benchmarks/prior_speed.py, dev-2c): ProPainter
# 14.6 on the CPU; on CUDA an estimate until measured. The propagation prior runs on the CPU anyway.
PRIOR_S_PER_MP = {("propainter", "cpu"): 14.6, ("propainter", "cuda"): 0.4,
                  ("propagation", "cpu"): 0.42, ("propagation", "cuda"): 0.42}
CODEC_S_PER_MP = 0.05
"""Decoding, compositing and encoding, per megapixel of input frame (CPU, any device)."""


@dataclass(frozen=True)
class Work:
    """The units of one run."""

    frames: int
    megapixels: float
    """Per working-size frame."""
    input_megapixels: float
    """Per input frame."""
    prior_frames: int
    vae_encodes: int
    vae_decodes: int
    denoiser_passes: int
    """One frame through BrushNet + unet_main at one timestep."""

    def gflop(self) -> float:
        return self.megapixels * (self.vae_encodes * VAE_ENCODE_GFLOP_PER_MP + self.vae_decodes * VAE_DECODE_GFLOP_PER_MP
                                  + self.denoiser_passes * DENOISER_GFLOP_PER_MP)


def count_work(frames: int, height: int, width: int, settings: Settings) -> Work:
    """The work of erasing `frames` frames of a height x width video with `settings`."""
    from .diffusion.pipeline import DDIM_INVERSION_STEPS
    from .diffusion.windows import clip_windows, pre_inference_indices

    frames = max(int(frames), 1)
    h, w = working_size(height, width, settings.max_size)
    passes = encodes = decodes = 0
    if settings.diffusion:
        clip = min(settings.clip_length, frames)
        schedule = clip_windows(frames, clip, min(settings.overlap, clip - 1))
        steps = settings.steps + (DDIM_INVERSION_STEPS if settings.prior_injection == "ddim" else 0)
        passes = sum(len(window) for step in range(steps) for window in schedule.for_step(step))
        encodes, decodes = 2 * frames, frames
        if settings.pre_inference and pre_inference_indices(frames, settings.clip_length) is not None:
            passes += steps * settings.clip_length
            decodes += settings.clip_length
    return Work(frames, h * w / 1e6, height * width / 1e6, frames if settings.prior != "none" else 0,
                encodes, decodes, passes)


def estimate_seconds(work: Work, settings: Settings, device: str) -> float:
    """Expected wall time of `work` on a device kind ("cpu" or "cuda")."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    seconds = work.gflop() / GFLOP_PER_S[kind]
    if settings.prior != "none":
        seconds += work.prior_frames * work.megapixels * PRIOR_S_PER_MP[(settings.prior, kind)]
    return seconds + work.frames * work.input_megapixels * CODEC_S_PER_MP


APP_SAVE_S_PER_MP = 0.25
"""The page's saving stage per megapixel of input frame: encoding the result, prior, before/after
(twice as wide) and mask videos (CPU, any device)."""
APP_FRAME_S = 0.015
"""Per frame on top, whatever its size: the paste and the four encoders' per-frame work, which
dominate at the small sizes a page request often has. Both from `benchmarks/app_speed.py` on
dev-2c (shared: CPU time over 1.6, the ratio of CPU time under load to quiet wall time that the
propagation prior shows against `benchmarks/prior_speed.py`)."""


def estimate_app_seconds(frames: int, height: int, width: int, settings: Settings, device: str) -> float:
    """Expected wall time of one page request: the run, then the page's videos encoded."""
    work = count_work(frames, height, width, settings)
    saving = work.frames * (APP_FRAME_S + work.input_megapixels * APP_SAVE_S_PER_MP)
    return estimate_seconds(work, settings, device) + saving
