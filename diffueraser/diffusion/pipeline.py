"""The denoising loop of DiffuEraser: prior latents in, refined latents out.

What the released `StableDiffusionDiffuEraserPipeline.__call__` and the diffusion half of
`DiffuEraser.forward` do, without their file I/O:

1. encode the masked frames with the VAE and add the mask channel (BrushNet's conditioning);
2. encode the prior frames and inject them into noise (released mix, or DDIM inversion);
3. for a video longer than two clips, denoise `clip_length` evenly sampled frames first and
   write them back as known frames ("pre-inference");
4. at each TCD step, denoise every window of frames from the latents as they were at the start
   of the step, and merge the windows with linear ramps.

Frames stay on the host as uint8 and go through the VAE in batches; the models, latents and
conditioning live on the models' device. Latents are kept in float32 whatever the models' dtype.

Difference from the released code: the released pipeline draws the VAE posterior samples
(`latent_dist.sample()`) from the global torch RNG and the block of noise from a device
generator. Here every random draw comes from one CPU `torch.Generator` seeded by the caller, in
the order noise block → prior latents → masked-frame latents, always in float32, so a seed draws
the same noise on any device and in any dtype. Pre-inference reuses the masked-frame latents
already encoded for the sampled frames (the released code encodes those frames a second time,
with a fresh posterior sample).
"""
from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models.chunking import FEED_FORWARD_TOKENS, chunk_feed_forward
from ..progress import DECODING, DIFFUSION, Progress, ProgressFn, silent
from .injection import ddim_invert, draw_clip_noise, inject_released, tile_noise
from .scheduler import ETA, make_scheduler
from .windows import RampBlender, WindowSchedule, clip_windows, pre_inference_indices

__all__ = ["DiffuEraserPipeline", "sample_posterior"]

CLIP_LENGTH = 22
"""Released frames per window (`nframes`)."""
VAE_BATCH = 4
"""Released VAE encoding batch (frames per call)."""
DDIM_INVERSION_STEPS = 8
"""Steps (passes over all windows) of the DDIM-inversion injection; fewer leave the inverted
latents with too little noise for the sampler's first timestep (DDIM is first order)."""
UINT8_MAX = 255.0


class _Tracker:
    """Counts the frames one stage has put through a network (VAE batches, denoiser windows).

    Frames, not calls, so that a VAE batch of one frame does not weigh as much as a window of 22.
    """

    def __init__(self, progress: ProgressFn, stage: str, total: int) -> None:
        self.progress, self.stage, self.total, self.done = progress, stage, total, 0
        progress(Progress(stage, 0, total))

    def advance(self, frames: int, detail: str) -> None:
        self.done += frames
        self.progress(Progress(self.stage, min(self.done, self.total), self.total, detail))


def sample_posterior(dist, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A float32 sample `mean + std · noise` of a VAE posterior (diffusers' DiagonalGaussianDistribution).

    The noise is drawn in float32 on the generator's device (without one: on the posterior's
    device), so the draw and the generator state after it do not depend on the VAE's dtype; in
    float32 the values are those of `dist.sample(generator)`. A distribution without `mean` and
    `std` is asked for its own sample.
    """
    mean, std = getattr(dist, "mean", None), getattr(dist, "std", None)
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor):
        return dist.sample(generator=generator).float()
    device = generator.device if generator is not None else mean.device
    noise = torch.randn(mean.shape, generator=generator, device=device, dtype=torch.float32).to(mean.device)
    return mean.float() + std.float() * noise


def _device_and_dtype(module: torch.nn.Module, fallback: torch.device) -> tuple[torch.device, torch.dtype]:
    """Where a module's weights live and their dtype (a weightless module: `fallback`, float32)."""
    param = next(iter(module.parameters()), None)
    if param is None:
        return fallback, torch.float32
    return param.device, param.dtype


class DiffuEraserPipeline:
    """BrushNet + unet_main + VAE + TCD scheduler, run over a whole video in staggered windows.

    Models are used where they are (put them on the device first); their transformer
    feed-forwards are set to run over slices of `feed_forward_tokens` tokens (None: left as they
    are), which changes no value and bounds the largest temporaries of a window. `clip_length` and
    `overlap` are the window size and the frames neighbouring windows share (None: clip_length // 4).
    """

    def __init__(
        self,
        brushnet: torch.nn.Module,
        unet: torch.nn.Module,
        vae: torch.nn.Module,
        scheduler=None,
        *,
        clip_length: int = CLIP_LENGTH,
        overlap: Optional[int] = None,
        vae_batch_size: int = VAE_BATCH,
        inversion_steps: int = DDIM_INVERSION_STEPS,
        conditioning_scale: float = 1.0,
        feed_forward_tokens: Optional[int] = FEED_FORWARD_TOKENS,
    ) -> None:
        self.brushnet, self.unet, self.vae = brushnet, unet, vae
        if feed_forward_tokens is not None:
            for net in (brushnet, unet):
                chunk_feed_forward(net, feed_forward_tokens)
        self.scheduler = scheduler if scheduler is not None else make_scheduler()
        self.clip_length = clip_length
        self.overlap = clip_length // 4 if overlap is None else overlap
        self.vae_batch_size = vae_batch_size
        self.inversion_steps = inversion_steps
        self.conditioning_scale = conditioning_scale
        self.device, self.dtype = _device_and_dtype(unet, torch.device("cpu"))
        self.vae_device, self.vae_dtype = _device_and_dtype(vae, self.device)
        self.scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._fresh_scheduler: Optional[dict] = None

    # ---- 1. VAE --------------------------------------------------------------------------------

    def _batches(self, count: int) -> Sequence[slice]:
        return [slice(i, min(i + self.vae_batch_size, count)) for i in range(0, count, self.vae_batch_size)]

    @torch.inference_mode()
    def encode(
        self, frames: np.ndarray, generator: Optional[torch.Generator] = None, tracker: Optional[_Tracker] = None
    ) -> torch.Tensor:
        """Scaled VAE latents `[T, 4, H/8, W/8]` (float32, on the device) of uint8 frames `[T, H, W, 3]`."""
        out = []
        for part in self._batches(len(frames)):
            x = torch.from_numpy(np.ascontiguousarray(frames[part])).to(self.vae_device)
            x = (x.permute(0, 3, 1, 2).float() / UINT8_MAX * 2 - 1).to(self.vae_dtype)
            z = sample_posterior(self.vae.encode(x).latent_dist, generator)
            out.append(z.to(self.device) * self.vae.config.scaling_factor)
            if tracker is not None:
                tracker.advance(part.stop - part.start, f"encoding frames {part.stop} of {len(frames)}")
        return torch.cat(out)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, output: str = "uint8", progress: ProgressFn = silent):
        """Frames from latents, on the host: uint8 numpy `[T, H, W, 3]`, or with `output="float"` the
        decoder's raw float32 torch `[T, 3, H, W]` (range about [-1, 1])."""
        if output not in ("uint8", "float"):
            raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
        parts = self._batches(len(latents))
        tracker = _Tracker(progress, DECODING, len(latents))
        out = []
        for part in parts:
            z = latents[part].to(self.vae_device) * (1 / self.vae.config.scaling_factor)
            x = self.vae.decode(z.to(self.vae_dtype)).sample.float()
            if output == "uint8":
                x = ((x / 2 + 0.5).clamp(0, 1) * UINT8_MAX).round().to(torch.uint8).permute(0, 2, 3, 1)
            out.append(x.cpu())
            tracker.advance(part.stop - part.start, f"frames {part.stop} of {len(latents)}")
        video = torch.cat(out)
        return video.numpy() if output == "uint8" else video

    # ---- 2. conditioning -----------------------------------------------------------------------

    @torch.inference_mode()
    def prepare_conditioning(
        self,
        masked: np.ndarray,
        masks: np.ndarray,
        generator: Optional[torch.Generator] = None,
        tracker: Optional[_Tracker] = None,
    ) -> torch.Tensor:
        """BrushNet's conditioning `[T, 5, h, w]`: latents of the masked frames + mask channel (1 = known).

        The mask channel is the nearest resize of the full-size mask to the latent size, i.e. the
        pixel at (8i, 8j), as released.
        """
        latents = self.encode(masked, generator, tracker)
        known = []
        for part in self._batches(len(masks)):
            m = torch.from_numpy(np.ascontiguousarray(~masks[part])).to(self.device, torch.float32)
            known.append(F.interpolate(m[:, None], size=latents.shape[-2:], mode="nearest"))
        return torch.cat([latents, torch.cat(known)], dim=1)

    # ---- 3. one window, one step ---------------------------------------------------------------

    def windows(self, num_frames: int) -> WindowSchedule:
        """The window layout for a video of `num_frames` frames."""
        return clip_windows(num_frames, self.clip_length, self.overlap)

    def denoise_window(
        self, latents: torch.Tensor, cond: torch.Tensor, prompt: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Predicted noise (float32) for one window of `F` frames: BrushNet, then unet_main, batched over F."""
        frames = latents.shape[0]
        x = self.scheduler.scale_model_input(latents, t).to(self.dtype)
        t = t.to(self.device)
        residuals = self.brushnet(
            x,
            t,
            encoder_hidden_states=prompt.repeat(frames, 1, 1),
            brushnet_cond=cond.to(self.dtype),
            conditioning_scale=self.conditioning_scale,
        )
        # Handed over as lists, the residuals are freed one by one as unet_main adds them.
        down, up = list(residuals.down_block_res_samples), list(residuals.up_block_res_samples)
        mid = residuals.mid_block_res_sample
        del residuals
        eps = self.unet(
            x,
            t,
            encoder_hidden_states=prompt,
            num_frames=frames,
            down_block_add_samples=down,
            mid_block_add_sample=mid,
            up_block_add_samples=up,
        ).sample
        return eps.float()

    def _over_windows(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        prompt: torch.Tensor,
        t: torch.Tensor,
        index: int,
        finish: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        tracker: Optional[_Tracker],
        label: str,
    ) -> torch.Tensor:
        """`finish(window latents, window noise)` for every window of step `index`, ramp-merged.

        Every window reads `latents` as they were at the start of the step.
        """
        windows = self.windows(len(latents)).for_step(index)
        blender = RampBlender(torch.empty_like(latents))
        for k, w in enumerate(windows):
            window = latents[w.start:w.stop]
            eps = self.denoise_window(window, cond[w.start:w.stop], prompt, t)
            blender.add(w, finish(window, eps))
            if tracker is not None:
                tracker.advance(w.stop - w.start, f"{label}, clip {k + 1} of {len(windows)}")
        return blender.out

    @torch.inference_mode()
    def step(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        prompt: torch.Tensor,
        index: int,
        t: torch.Tensor,
        tracker: Optional[_Tracker] = None,
        label: str = "denoising",
    ) -> torch.Tensor:
        """One TCD step (`index`, timestep `t`) over the whole video; call `timesteps(steps)` first."""
        if self._fresh_scheduler is None:
            raise RuntimeError("call timesteps(steps) before step()")

        def scheduler_step(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
            # Released: every window starts from the scheduler state right after set_timesteps.
            self.scheduler.__dict__.update(self._fresh_scheduler)
            return self.scheduler.step(eps, t, x, eta=ETA, return_dict=False)[0]

        return self._over_windows(latents, cond, prompt, t, index, scheduler_step, tracker, label)

    @torch.inference_mode()
    def predict_noise(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        prompt: torch.Tensor,
        t: int,
        index: int,
        tracker: Optional[_Tracker] = None,
    ) -> torch.Tensor:
        """The denoiser's noise prediction over the whole video at timestep `t`, windows of step `index`."""
        t = torch.tensor(t, dtype=torch.long)
        return self._over_windows(latents, cond, prompt, t, index, lambda x, eps: eps, tracker, "inverting prior")

    # ---- 4. whole passes -----------------------------------------------------------------------

    def timesteps(self, steps: int) -> torch.Tensor:
        """Set the scheduler up for `steps` steps and return its timesteps (on the host)."""
        self.scheduler.set_timesteps(steps, device="cpu")
        self._fresh_scheduler = copy.deepcopy(self.scheduler.__dict__)
        return self.scheduler.timesteps

    @torch.inference_mode()
    def denoise(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        prompt: torch.Tensor,
        steps: int,
        tracker: Optional[_Tracker] = None,
        label: str = "step",
        on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
    ) -> torch.Tensor:
        """All TCD steps from the starting latents; returns the final (clean) latents.

        `on_step(i, latents)` sees the latents after each step.
        """
        timesteps = self.timesteps(steps)
        for i, t in enumerate(timesteps):
            latents = self.step(latents, cond, prompt, i, t, tracker, f"{label} {i + 1}/{len(timesteps)}")
            if on_step is not None:
                on_step(i, latents)
        return latents

    @torch.inference_mode()
    def initial_latents(
        self,
        prior: torch.Tensor,
        noise: torch.Tensor,
        cond: torch.Tensor,
        prompt: torch.Tensor,
        steps: int,
        injection: str = "released",
        tracker: Optional[_Tracker] = None,
    ) -> torch.Tensor:
        """The sampler's start from the prior latents: the released noise mix, or DDIM inversion."""
        if injection == "released":
            return inject_released(prior, tile_noise(noise, len(prior)), self.scheduler.alphas_cumprod)
        if injection == "ddim":
            first = int(self.timesteps(steps)[0])

            def eps_fn(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
                return self.predict_noise(x, cond, prompt, t, i, tracker)

            return ddim_invert(prior, eps_fn, self.scheduler.alphas_cumprod, first, self.inversion_steps)
        raise ValueError(f"injection must be 'released' or 'ddim', got {injection!r}")

    @torch.inference_mode()
    def pre_inference(
        self,
        prior: torch.Tensor,
        cond: torch.Tensor,
        noise: torch.Tensor,
        prompt: torch.Tensor,
        steps: int,
        injection: str = "released",
        generator: Optional[torch.Generator] = None,
        tracker: Optional[_Tracker] = None,
    ) -> Optional[list[int]]:
        """Denoise `clip_length` frames sampled over the video and write them back as known frames.

        Updates `prior` (their latents become the denoised ones) and `cond` (their masked-frame
        latents become those of the decoded frames, their mask channel all known) in place.
        Returns the sampled indices, or None when the video is not longer than two clips.
        """
        index = pre_inference_indices(len(prior), self.clip_length)
        if index is None:
            return None
        start = self.initial_latents(prior[index], noise, cond[index], prompt, steps, injection, tracker)
        out = self.denoise(start, cond[index], prompt, steps, tracker, "pre-inference step")
        prior[index] = out
        frames = self.decode(out)
        known = np.zeros(frames.shape[:3], dtype=bool)
        cond[index] = self.prepare_conditioning(frames, known, generator, tracker)
        return index

    # ---- 5. everything -------------------------------------------------------------------------

    def check_inputs(self, masked: np.ndarray, masks: np.ndarray, prior_frames: np.ndarray) -> None:
        """Refuse inputs the loop cannot take (the engine prepares them; a mismatch is a bug upstream)."""
        if masks.ndim != 3 or masks.dtype != bool or len(masks) == 0:
            raise ValueError(f"masks must be a non-empty bool array [T, H, W], got {masks.dtype} {masks.shape}")
        shape = (*masks.shape, 3)
        for name, frames in (("masked frames", masked), ("prior frames", prior_frames)):
            if frames.shape != shape or frames.dtype != np.uint8:
                raise ValueError(f"{name} must be uint8 {shape} like the masks, got {frames.dtype} {frames.shape}")
        if masks.shape[1] % self.scale_factor or masks.shape[2] % self.scale_factor:
            raise ValueError(f"frame sides must be multiples of {self.scale_factor}, got {masks.shape[1:]}")

    def _work(self, num_frames: int, steps: int, injection: str, pre: bool) -> int:
        """Frames `__call__` puts through the VAE encoder and the denoiser: its progress total."""

        def denoised(count: int) -> int:
            """Frames in the windows of every denoiser pass over `count` frames: inversion's, then sampling's."""
            schedule = self.windows(count)
            passes = [*range(self.inversion_steps if injection == "ddim" else 0), *range(steps)]
            return sum(w.stop - w.start for i in passes for w in schedule.for_step(i))

        work = 2 * num_frames + denoised(num_frames)
        index = pre_inference_indices(num_frames, self.clip_length) if pre else None
        if index is not None:
            work += denoised(len(index)) + len(index)
        return work

    @torch.inference_mode()
    def __call__(
        self,
        masked: np.ndarray,
        masks: np.ndarray,
        prior_frames: np.ndarray,
        prompt_embeds: torch.Tensor,
        *,
        steps: int = 2,
        seed: int = 0,
        injection: str = "released",
        pre_inference: bool = True,
        progress: ProgressFn = silent,
    ) -> torch.Tensor:
        """Final latents `[T, 4, H/8, W/8]` for a video.

        masked: uint8 `[T, H, W, 3]` frames with holes black (`masks.masked_frames`); masks: bool
        `[T, H, W]`, True = hole; prior_frames: uint8 `[T, H, W, 3]`; prompt_embeds: `[1, S, D]`
        (the empty prompt's embedding, computed once by the caller). Decode with `decode`.
        `progress` gets "diffusion" reports, one per VAE batch and per window of every step, counting frames.
        """
        self.check_inputs(masked, masks, prior_frames)
        num_frames, height, width = masks.shape
        tracker = _Tracker(progress, DIFFUSION, self._work(num_frames, steps, injection, pre_inference))
        generator = torch.Generator("cpu").manual_seed(seed)
        prompt = prompt_embeds.to(self.device, self.dtype)
        noise = draw_clip_noise(self.clip_length, height // self.scale_factor, width // self.scale_factor, generator)
        noise = noise.to(self.device)
        prior = self.encode(prior_frames, generator, tracker)
        cond = self.prepare_conditioning(masked, masks, generator, tracker)
        if pre_inference:
            self.pre_inference(prior, cond, noise, prompt, steps, injection, generator, tracker)
        latents = self.initial_latents(prior, noise, cond, prompt, steps, injection, tracker)
        return self.denoise(latents, cond, prompt, steps, tracker)
