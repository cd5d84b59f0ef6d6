"""Layer-by-layer runs of diffusers' UNet blocks, with the hook points the released BrushNet coupling uses.

diffusers' own block forwards only return skip features. The released DiffuEraser code also adds a BrushNet
residual inside each layer of the down and up blocks of unet_main (after resnet + attention, before the motion
module; after each resampler), and its BrushNet reads the hidden state at those same points of its up blocks.
These functions run a block's own sub-modules in that order; with no residuals and no motion modules they compute
exactly what diffusers' block forward computes.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch import nn


def _layers(block: nn.Module) -> Iterator[tuple[nn.Module, nn.Module | None, nn.Module | None]]:
    """(resnet, spatial transformer or None, motion module or None) for each layer of a diffusers block."""
    count = len(block.resnets)
    attentions = getattr(block, "attentions", None) or [None] * count
    motions = getattr(block, "motion_modules", None) or [None] * count
    return zip(block.resnets, attentions, motions)


def _layer(
    resnet: nn.Module,
    attention: nn.Module | None,
    motion: nn.Module | None,
    hidden: torch.Tensor,
    temb: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    add_sample: torch.Tensor | None,
    num_frames: int,
    cross_attention_kwargs: dict[str, Any] | None,
) -> torch.Tensor:
    """resnet -> spatial attention -> (+ BrushNet residual) -> motion module."""
    hidden = resnet(hidden, temb)
    if attention is not None:
        hidden = attention(
            hidden,
            encoder_hidden_states=encoder_hidden_states,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0]
    if add_sample is not None:
        hidden = hidden + add_sample
    if motion is not None:
        hidden = motion(hidden, num_frames=num_frames)
    return hidden


def num_down_points(block: nn.Module) -> int:
    """How many skip features (= BrushNet down residuals) a down block emits: one per layer, one per downsampler."""
    return len(block.resnets) + (block.downsamplers is not None)


def num_up_points(block: nn.Module) -> int:
    """How many BrushNet up residuals an up block takes: one per layer, one per upsampler."""
    return len(block.resnets) + (block.upsamplers is not None)


def down_block_forward(
    block: nn.Module,
    hidden: torch.Tensor,
    temb: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    *,
    num_frames: int = 1,
    add_samples: Sequence[torch.Tensor] | None = None,
    cross_attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run a down block; returns its output and its skip features (after each layer and after the downsampler).

    `add_samples` (one per skip point) are added after each layer's attention and after the downsampler, so the
    skip features include them.
    """
    adds = iter(add_samples) if add_samples is not None else None
    skips: tuple[torch.Tensor, ...] = ()
    for resnet, attention, motion in _layers(block):
        add = next(adds) if adds is not None else None
        hidden = _layer(
            resnet, attention, motion, hidden, temb, encoder_hidden_states, add, num_frames, cross_attention_kwargs
        )
        skips += (hidden,)
    if block.downsamplers is not None:
        for downsampler in block.downsamplers:
            hidden = downsampler(hidden)
        if adds is not None:
            hidden = hidden + next(adds)
        skips += (hidden,)
    return hidden, skips


def up_block_forward(
    block: nn.Module,
    hidden: torch.Tensor,
    skips: Sequence[torch.Tensor],
    temb: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    *,
    upsample_size: Sequence[int] | None = None,
    num_frames: int = 1,
    add_samples: Sequence[torch.Tensor] | None = None,
    cross_attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run an up block on its skip features (consumed last first); returns its output and each layer's output.

    The layer outputs are taken after each layer and after the upsampler; `add_samples` (one per point) are added
    after each layer's attention and after the upsampler.
    """
    adds = iter(add_samples) if add_samples is not None else None
    pending = list(skips)
    outputs: tuple[torch.Tensor, ...] = ()
    for resnet, attention, motion in _layers(block):
        hidden = torch.cat([hidden, pending.pop()], dim=1)
        add = next(adds) if adds is not None else None
        hidden = _layer(
            resnet, attention, motion, hidden, temb, encoder_hidden_states, add, num_frames, cross_attention_kwargs
        )
        outputs += (hidden,)
    if block.upsamplers is not None:
        for upsampler in block.upsamplers:
            hidden = upsampler(hidden, output_size=upsample_size)
        if adds is not None:
            hidden = hidden + next(adds)
        outputs += (hidden,)
    return hidden, outputs


def timestep_embedding(
    model: nn.Module, timestep: torch.Tensor | float | int, batch: int, sample: torch.Tensor,
    timestep_cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """SD1.5 time embedding for `batch` elements: sinusoid (`model.time_proj`) then `model.time_embedding`."""
    timesteps = torch.as_tensor(timestep, device=sample.device)
    if timesteps.ndim == 0:
        timesteps = timesteps[None]
    t_emb = model.time_proj(timesteps.expand(batch))
    # time_proj always computes in float32; the embedding MLP runs in the model's dtype.
    return model.time_embedding(t_emb.to(dtype=model.dtype), timestep_cond)
