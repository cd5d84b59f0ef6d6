"""The few-step sampler as released: a TCD scheduler, and the PCM LoRA that makes unet_main few-step.

The released code loads `pcm_sd15_smallcfg_{N}step_converted.safetensors` with a Stable
Diffusion pipeline's `load_lora_weights`, which applies it to the pipeline's `unet` (unet_main)
and leaves BrushNet alone. Those files are in the kohya / web-UI layout that the PCM training
script writes: `lora_unet_<diffusers module path with '_'>.{lora_down.weight, lora_up.weight,
alpha}`, covering the spatial SD1.5 layers (attention projections, proj_in/out, feed-forwards,
resnet convs and time projections, down/up-sampler convs); the motion modules get nothing.
We load it through diffusers/peft the same way, then fuse it into the weights and drop the
adapter so that sampling costs no more than without it.
"""
from __future__ import annotations

from typing import Mapping

import torch
from diffusers import TCDScheduler
from diffusers.loaders import StableDiffusionLoraLoaderMixin

from ..errors import CheckpointError

__all__ = ["TCD_CONFIG", "ETA", "make_scheduler", "load_pcm_lora"]

TCD_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    timestep_spacing="trailing",
)
"""The released `TCDScheduler(...)` arguments; everything else is the class default."""

ETA = 0.0
"""The pipeline's `eta`: TCD steps are deterministic."""

_UNET_PREFIX = "unet"  # diffusers' name for the pipeline's denoiser in converted LoRA keys
_DOWN_SUFFIXES = ("lora_down.weight", "lora_A.weight", ".lora.down.weight")
_TEXT_ENCODER_PREFIXES = ("lora_te_", "lora_te1_", "lora_te2_", "text_encoder.")


def make_scheduler() -> TCDScheduler:
    """A fresh TCD scheduler configured as the released pipeline configures it."""
    return TCDScheduler(**TCD_CONFIG)


def _count_lora_modules(state_dict: Mapping[str, torch.Tensor]) -> int:
    """How many layers a LoRA file patches: one down (A) matrix per layer, in any common layout."""
    return sum(1 for k in state_dict if k.endswith(_DOWN_SUFFIXES))


def _patched_layers(model: torch.nn.Module, adapter_name: str) -> list[str]:
    """Names of the layers peft wrapped for `adapter_name`."""
    from peft.tuners.lora import LoraLayer

    return [n for n, m in model.named_modules() if isinstance(m, LoraLayer) and adapter_name in m.lora_A]


def load_pcm_lora(
    unet: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    scale: float = 1.0,
    adapter_name: str = "pcm",
    name: str = "the PCM LoRA",
) -> tuple[str, ...]:
    """Fuse a PCM LoRA state dict (kohya layout, as released) into `unet` in place.

    Returns the names of the layers it changed (their `.weight` is what changed). Raises
    CheckpointError, naming the LoRA by `name`, when it carries text-encoder weights (the PCM
    SD1.5 files do not) or holds a layer that `unet` does not have: no key is silently ignored.
    """
    raw = dict(state_dict)
    text_keys = [k for k in raw if k.startswith(_TEXT_ENCODER_PREFIXES)]
    if text_keys:
        raise CheckpointError(
            f"{name} holds {len(text_keys)} text-encoder LoRA weights (e.g. {text_keys[0]}); "
            "only UNet LoRAs such as the PCM SD1.5 files are supported"
        )
    expected = _count_lora_modules(raw)
    if expected == 0:
        raise CheckpointError(f"{name} holds no LoRA weights (no '*lora_down.weight' / '*lora_A.weight' keys)")

    converted, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(raw, unet_config=unet.config)
    try:
        unet.load_lora_adapter(converted, prefix=_UNET_PREFIX, network_alphas=alphas, adapter_name=adapter_name)
    except Exception as exc:  # shape mismatch, unknown layout
        raise CheckpointError(f"cannot apply {name} to unet_main: {exc}") from exc
    patched = _patched_layers(unet, adapter_name)
    if len(patched) != expected:
        unet.unload_lora()
        raise CheckpointError(
            f"{name} has {expected} layers but only {len(patched)} match unet_main; is it an SD1.5 LoRA?"
        )
    unet.fuse_lora(lora_scale=scale, adapter_names=[adapter_name])
    unet.unload_lora()
    return tuple(patched)
