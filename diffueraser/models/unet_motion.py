"""unet_main: the SD1.5 UNet with AnimateDiff v1-5-2 motion modules, taking BrushNet residuals as released.

diffusers' own `UNetMotionModel` has exactly the released state dict (1,253 tensors at full size, checked against
the reference key list), so this class subclasses it and changes only what the released forward does
differently (reference README §4.2, §4.4):
- frames are stacked on the batch axis, `[B*F, C, h, w]`, with an explicit `num_frames`;
- the BrushNet residuals are added inside the blocks (`blocks.py`) and after the first resnet pass of the mid block;
- the mid block applies `resnets[1]` twice (`_released_mid_block`);
- the motion modules of an `UpBlockMotion` normalise with 32 groups whatever `norm_num_groups` is.
LoRA loading (`load_lora_adapter`, `fuse_lora`) is diffusers' own, inherited.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from diffusers.models.unets.unet_motion_model import UNetMotionModel as DiffusersUNetMotionModel
from diffusers.models.unets.unet_motion_model import UpBlockMotion
from diffusers.utils import BaseOutput, apply_lora_scale
from torch import nn

from .blocks import down_block_forward, num_down_points, num_up_points, timestep_embedding, up_block_forward
from .loading import ANY_VALUE, ReleasedConfigMixin

UP_BLOCK_MOTION_GROUPS = 32  # released quirk: UpBlockMotion's motion modules always use 32 GroupNorm groups


@dataclass
class UNetMotionOutput(BaseOutput):
    """sample: the predicted noise, `[B*F, C, h, w]` like the input."""

    sample: torch.Tensor


def _released_mid_block(
    mid: nn.Module,
    hidden: torch.Tensor,
    temb: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    num_frames: int,
    add_sample: torch.Tensor | None,
    cross_attention_kwargs: dict[str, Any] | None,
) -> torch.Tensor:
    """Mid block in the released order: resnet0 -> attention -> resnet1 -> (+ residual) -> motion -> resnet1 again."""
    hidden = mid.resnets[0](hidden, temb)
    for attention, resnet, motion in zip(mid.attentions, mid.resnets[1:], mid.motion_modules):
        hidden = attention(
            hidden,
            encoder_hidden_states=encoder_hidden_states,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0]
        hidden = resnet(hidden, temb)
        if add_sample is not None:
            hidden = hidden + add_sample
        hidden = motion(hidden, num_frames=num_frames)
        # Released quirk (reference §4.2 item 3): the same resnet runs again after the motion module.
        hidden = resnet(hidden, temb)
    return hidden


def _chunks(samples: Sequence[torch.Tensor], sizes: Sequence[int]) -> list[list[torch.Tensor]]:
    out, start = [], 0
    for size in sizes:
        out.append(list(samples[start : start + size]))
        start += size
    return out


class UNetMotionModel(ReleasedConfigMixin, DiffusersUNetMotionModel):
    """The released unet_main; `from_pretrained(folder)` loads the released `unet_main/` folder."""

    # Keys the released config.json carries that the released class accepted and never read.
    _released_config_extras = {
        key: ANY_VALUE
        for key in (
            "attention_head_dim",
            "center_input_sample",
            "conditioning_channels",
            "conditioning_embedding_out_channels",
            "flip_sin_to_cos",
            "freq_shift",
            "mid_block_type",
        )
    }

    @functools.wraps(DiffusersUNetMotionModel.__init__)  # keeps diffusers' signature, hence its config keys
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.config.use_motion_mid_block:
            raise ValueError("UNetMotionModel: the released model has a motion mid block (use_motion_mid_block).")
        for block in self.up_blocks:
            if isinstance(block, UpBlockMotion):
                for motion in block.motion_modules:
                    motion.norm.num_groups = UP_BLOCK_MOTION_GROUPS

    def _residuals_per_block(
        self,
        down: Sequence[torch.Tensor] | None,
        mid: torch.Tensor | None,
        up: Sequence[torch.Tensor] | None,
    ) -> tuple[torch.Tensor | None, list, list]:
        """The conv_in residual, then the down and up residuals grouped per block (None per block if not given)."""
        given = [x is not None for x in (down, mid, up)]
        if not any(given):
            return None, [None] * len(self.down_blocks), [None] * len(self.up_blocks)
        if not all(given):
            raise ValueError("UNetMotionModel: pass all three BrushNet residual arguments, or none.")
        down_sizes = [num_down_points(block) for block in self.down_blocks]
        up_sizes = [num_up_points(block) for block in self.up_blocks]
        if len(down) != 1 + sum(down_sizes) or len(up) != sum(up_sizes):
            raise ValueError(
                f"UNetMotionModel: expected {1 + sum(down_sizes)} down and {sum(up_sizes)} up residuals, "
                f"got {len(down)} and {len(up)}."
            )
        first, down_adds, up_adds = down[0], _chunks(down[1:], down_sizes), _chunks(up, up_sizes)
        for given_list in (down, up):
            if isinstance(given_list, list):
                given_list.clear()  # the caller handed them over: each is freed once added
        return first, down_adds, up_adds

    @apply_lora_scale("cross_attention_kwargs")
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        num_frames: int,
        down_block_add_samples: Sequence[torch.Tensor] | None = None,
        mid_block_add_sample: torch.Tensor | None = None,
        up_block_add_samples: Sequence[torch.Tensor] | None = None,
        timestep_cond: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> UNetMotionOutput | tuple[torch.Tensor]:
        """Predict noise for `B` clips of `num_frames` frames stacked as `sample [B*F, 4, h, w]`.

        encoder_hidden_states is `[B, S, D]` (repeated per frame here). The three `*_add_sample(s)` are a
        BrushNet's residuals (`BrushNetOutput` fields), all given or none. Residuals given as lists are
        taken over: the lists are emptied and each residual is released as soon as it has been added,
        so none outlives its use (tuples are left as they are).
        """
        if sample.shape[0] % num_frames:
            raise ValueError(f"UNetMotionModel: batch {sample.shape[0]} is not a multiple of num_frames {num_frames}.")
        first_add, down_adds, up_adds = self._residuals_per_block(
            down_block_add_samples, mid_block_add_sample, up_block_add_samples
        )

        batch = sample.shape[0] // num_frames
        temb = timestep_embedding(self, timestep, batch, sample, timestep_cond)
        temb = temb.repeat_interleave(num_frames, dim=0)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)

        hidden = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (hidden,)
        if first_add is not None:
            # Released quirk: the conv_in skip copy is taken before its BrushNet residual is added.
            hidden = hidden + first_add
            del first_add
        for i, block in enumerate(self.down_blocks):
            adds, down_adds[i] = down_adds[i], None
            hidden, block_skips = down_block_forward(
                block, hidden, temb, encoder_hidden_states,
                num_frames=num_frames, add_samples=adds, cross_attention_kwargs=cross_attention_kwargs,
            )
            skips += block_skips

        hidden = _released_mid_block(
            self.mid_block, hidden, temb, encoder_hidden_states,
            num_frames, mid_block_add_sample, cross_attention_kwargs,
        )

        # Released: upsample to the skip's size only when a latent side is not a multiple of 2**num_upsamplers.
        odd_size = any(side % 2**self.num_upsamplers for side in sample.shape[-2:])
        for i, block in enumerate(self.up_blocks):
            adds, up_adds[i] = up_adds[i], None
            count = len(block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            size = skips[-1].shape[2:] if odd_size and skips else None
            hidden, _ = up_block_forward(
                block, hidden, block_skips, temb, encoder_hidden_states, upsample_size=size,
                num_frames=num_frames, add_samples=adds, cross_attention_kwargs=cross_attention_kwargs,
            )

        if self.conv_norm_out is not None:
            hidden = self.conv_act(self.conv_norm_out(hidden))
        hidden = self.conv_out(hidden)
        return UNetMotionOutput(sample=hidden) if return_dict else (hidden,)
