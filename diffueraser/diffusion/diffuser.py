"""The loaded diffusion half of the method: working-size frames and prior in, refined frames out.

Holds the VAE, BrushNet and unet_main with the PCM LoRA of the chosen step count fused in, and
the empty prompt's text embedding, computed once (the text encoder is then released).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import torch

from ..masks import masked_frames
from ..settings import Settings
from .pipeline import DiffuEraserPipeline
from .scheduler import load_pcm_lora

PROMPT = ""
"""The released pipeline always runs with the empty prompt and guidance 0."""
VAE_BATCH_CUDA = 4
"""Frames per VAE call on a GPU (the released encoding batch)."""
VAE_BATCH_CPU = 1
"""On a CPU batching frames gains no speed and multiplies the decoder's full-size activations."""


@torch.inference_mode()
def encode_prompt(tokenizer, text_encoder, prompt: str = PROMPT) -> torch.Tensor:
    """CLIP last hidden state `[1, 77, D]` of `prompt` (tokenizer padding to its maximum length)."""
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


class Diffuser:
    """BrushNet + unet_main + VAE ready to refine a prior; built from resolved checkpoint paths."""

    def __init__(self, brushnet, unet, vae, prompt_embeds: torch.Tensor, lora_steps: Optional[int] = None,
                 reload_unet: Optional[Callable[[], torch.nn.Module]] = None) -> None:
        self.brushnet, self.unet, self.vae = brushnet, unet, vae
        self.prompt_embeds = prompt_embeds
        self.lora_steps = lora_steps
        self.reload_unet = reload_unet

    @classmethod
    def from_paths(cls, paths, device: torch.device, dtype: torch.dtype) -> "Diffuser":
        """Load from `weights.resolve(["denoiser", "text", "vae", "pcm"], ...)` paths, LoRA fused."""
        from ..weights import load_denoiser, load_text_encoder, load_vae

        text = load_text_encoder(paths, device, dtype)
        prompt_embeds = encode_prompt(text.tokenizer, text.model)
        del text
        nets = load_denoiser(paths, device, dtype)
        diffuser = cls(
            nets.brushnet, nets.unet_main, load_vae(paths, device, dtype), prompt_embeds,
            reload_unet=lambda: load_denoiser(paths, device, dtype).unet_main,
        )
        diffuser.use_lora(paths.pcm_lora, paths.pcm_steps)
        return diffuser

    def use_lora(self, path: os.PathLike, steps: int) -> None:
        """Fuse the PCM LoRA for `steps` into unet_main, reloading its base weights when another was fused."""
        if self.lora_steps == steps:
            return
        if self.lora_steps is not None:
            if self.reload_unet is None:
                raise ValueError(f"unet_main carries the {self.lora_steps}-step LoRA and cannot be reloaded")
            self.unet = self.reload_unet()
        load_pcm_lora(self.unet, path)
        self.lora_steps = steps

    def __call__(
        self,
        frames: np.ndarray,
        holes: np.ndarray,
        prior: Optional[np.ndarray],
        settings: Settings,
        seed: int,
        progress: Optional[Callable[[str, float], None]] = None,
    ) -> np.ndarray:
        """Refined uint8 frames [T, H, W, 3]; `holes` is the dilated mask, `prior` None for prior 'none'."""
        report = progress or (lambda stage, fraction: None)
        masked = masked_frames(frames, holes)
        pipe = DiffuEraserPipeline(
            self.brushnet, self.unet, self.vae, clip_length=settings.clip_length, overlap=settings.overlap,
            vae_batch_size=VAE_BATCH_CUDA if self.vae.device.type == "cuda" else VAE_BATCH_CPU,
        )
        latents = pipe(
            masked, holes,
            # Without a prior the masked frames stand in for it: the sampler starts from noise
            # mixed with their latents, as it would with a prior.
            masked if prior is None else prior,
            self.prompt_embeds, steps=settings.steps, seed=seed, injection=settings.prior_injection,
            pre_inference=settings.pre_inference,
            progress=lambda fraction, message: report(f"diffusion {message}".strip(), fraction),
        )
        report("decoding", 0.0)
        return pipe.decode(latents, progress=lambda fraction, message: report("decoding", fraction))
