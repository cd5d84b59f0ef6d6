"""The loaded diffusion half of the method: working-size frames and prior in, refined frames out.

Holds the VAE, BrushNet and unet_main with the PCM LoRA of the chosen step count fused in, and
the empty prompt's text embedding, computed once (the text encoder is then released). A call with
another step count swaps the LoRA in place: the layers the fused LoRA changed get their checkpoint
values back (from a source that reads them from disk when asked), then the new LoRA is fused; a
lock keeps a swap and the run that uses its weights together, so concurrent calls never mix.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, Mapping, Optional

import numpy as np
import torch

from ..masks import masked_frames
from ..progress import ProgressFn, silent
from ..settings import Settings
from .pipeline import DiffuEraserPipeline
from .scheduler import load_pcm_lora

PROMPT = ""
"""The released pipeline always runs with the empty prompt and guidance 0."""
VAE_BATCH_CUDA = 4
"""Frames per VAE call on a GPU (the released encoding batch)."""
VAE_BATCH_CPU = 1
"""On a CPU batching frames gains no speed and multiplies the decoder's full-size activations."""

LoraSource = Callable[[int], Mapping[str, torch.Tensor]]
"""lora(steps) → the released PCM LoRA state dict for that step count."""
BaseWeights = Callable[[Iterable[str]], Iterator[tuple[str, torch.Tensor]]]
"""base(names) → unet_main's checkpoint tensors of those names, one at a time."""


@torch.inference_mode()
def encode_prompt(tokenizer, text_encoder, prompt: str = PROMPT) -> torch.Tensor:
    """CLIP last hidden state `[1, 77, D]` of `prompt` (tokenizer padding to its maximum length)."""
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


class Diffuser:
    """BrushNet + unet_main + VAE ready to refine a prior; `weights.load_diffuser` builds it from checkpoints.

    `lora` and `base_weights` let a call with another step count swap the PCM LoRA in place;
    without them the LoRA fused at `lora_steps` is the only one it can run with.
    """

    def __init__(self, brushnet, unet, vae, prompt_embeds: torch.Tensor, lora_steps: Optional[int] = None, *,
                 lora: Optional[LoraSource] = None, base_weights: Optional[BaseWeights] = None) -> None:
        self.brushnet, self.unet, self.vae = brushnet, unet, vae
        self.prompt_embeds = prompt_embeds
        self.lora_steps = lora_steps
        self.lora, self.base_weights = lora, base_weights
        self.lock = threading.Lock()
        # Names of the unet_main tensors the fused LoRA changed: () none, None unknown (fused elsewhere).
        self._fused: Optional[tuple[str, ...]] = () if lora_steps is None else None

    def use_lora(self, steps: int) -> None:
        """Fuse the PCM LoRA for `steps` into unet_main, in place of the one fused now (waits for a running call)."""
        with self.lock:
            self._swap_lora(steps)

    def _swap_lora(self, steps: int) -> None:
        if self.lora_steps == steps:
            return
        if self.lora is None:
            raise ValueError(f"this Diffuser has no LoRA source, so it cannot fuse the {steps}-step PCM LoRA "
                             f"(it carries {self.lora_steps or 'no'}-step weights)")
        if self._fused != ():
            self._restore_base()
        layers = load_pcm_lora(self.unet, self.lora(steps), name=f"the {steps}-step PCM LoRA")
        self._fused = tuple(f"{layer}.weight" for layer in layers)
        self.lora_steps = steps

    @torch.no_grad()
    def _restore_base(self) -> None:
        """Put back unet_main's checkpoint values where the fused LoRA changed it (all of it when unknown)."""
        if self.base_weights is None:
            raise ValueError("unet_main carries a fused PCM LoRA and no source of its base weights was given")
        params = dict(self.unet.named_parameters())
        names = self._fused if self._fused is not None else tuple(params)
        self.lora_steps = None  # until the restore ends, unet_main carries neither LoRA; a retry restores again
        for name, tensor in self.base_weights(names):
            param = params[name]
            # Cast on the host as a fresh load does, so the values are bit-identical to it.
            param.copy_(tensor.to(dtype=param.dtype))
        self._fused = ()

    def __call__(
        self,
        frames: np.ndarray,
        holes: np.ndarray,
        prior: Optional[np.ndarray],
        settings: Settings,
        seed: int,
        progress: ProgressFn = silent,
    ) -> np.ndarray:
        """Refined uint8 frames [T, H, W, 3] with the PCM LoRA of `settings.steps` (swapped in if needed);
        `holes` is the dilated mask, `prior` None for prior 'none'. `progress` gets the "diffusion"
        reports, then the "decoding" ones.

        The swap and the run hold the lock: a concurrent call waits and never sees these weights change.
        """
        with self.lock:
            self._swap_lora(settings.steps)
            return self._refine(frames, holes, prior, settings, seed, progress)

    def _refine(self, frames: np.ndarray, holes: np.ndarray, prior: Optional[np.ndarray], settings: Settings,
                seed: int, progress: ProgressFn) -> np.ndarray:
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
            pre_inference=settings.pre_inference, progress=progress,
        )
        return pipe.decode(latents, progress=progress)
