"""BrushNet (the released "BrushNet_CA" variant): the masked-image branch whose features steer unet_main.

A full SD1.5-shaped UNet - down blocks, mid block and up blocks, with cross-attention - whose input conv takes
noisy latents + masked-image latents + mask (4 + 4 + 1 channels) and which has no output head. Every hidden state
at a coupling point (its input conv, each down layer and downsampler, the mid block, each up layer and upsampler)
goes through its own 1x1 "zero" conv and is returned as a residual for unet_main (reference README §4.3). Built
from diffusers' blocks; the state dict equals the released `brushnet/` checkpoint (738 tensors at full size).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2DCrossAttn, get_down_block, get_up_block
from diffusers.utils import BaseOutput
from torch import nn

from .blocks import down_block_forward, num_down_points, num_up_points, timestep_embedding, up_block_forward
from .loading import ANY_VALUE, ReleasedConfigMixin

TIME_EMBED_MULT = 4  # SD1.5: time embedding width = 4 x first block width
CONV_IN_KERNEL = 3
RGB, BGR = "rgb", "bgr"


@dataclass
class BrushNetOutput(BaseOutput):
    """Residuals for unet_main, in the order it consumes them, already scaled by `conditioning_scale`.

    down_block_res_samples: input conv, then every down-block skip point (12 at SD1.5 size).
    mid_block_res_sample: the mid block output.
    up_block_res_samples: every up-block layer and upsampler output (15 at SD1.5 size).
    """

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor
    up_block_res_samples: tuple[torch.Tensor, ...]


def _zero_conv(channels: int) -> nn.Conv2d:
    """1x1 conv initialised to zero, so an untrained BrushNet leaves unet_main unchanged."""
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _per_block(value: Any, count: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


class BrushNetModel(ReleasedConfigMixin, ModelMixin, AttentionMixin, ConfigMixin):
    """The released BrushNet; `from_pretrained(folder)` loads the released `brushnet/` folder."""

    # Keys of the released config.json that the released BrushNet_CA never read, or feature switches it left off.
    _released_config_extras = {
        "conditioning_embedding_out_channels": ANY_VALUE,  # no conditioning-embedding network in BrushNet_CA
        "global_pool_conditions": ANY_VALUE,  # acts only in guess mode, which the pipeline never uses
        "addition_embed_type_num_heads": ANY_VALUE,
        "addition_embed_type": None,
        "addition_time_embed_dim": None,
        "class_embed_type": None,
        "num_class_embeds": None,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "projection_class_embeddings_input_dim": None,
    }

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        conditioning_channels: int = 5,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        mid_block_type: str = "UNetMidBlock2DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        only_cross_attention: bool | tuple[bool, ...] = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1280,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        attention_head_dim: int | tuple[int, ...] = 8,
        num_attention_heads: int | tuple[int, ...] | None = None,
        use_linear_projection: bool = False,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        brushnet_conditioning_channel_order: str = RGB,
    ):
        super().__init__()
        if mid_block_type != "UNetMidBlock2DCrossAttn":
            raise ValueError(f"BrushNetModel: mid_block_type {mid_block_type!r} is not supported.")
        if brushnet_conditioning_channel_order not in (RGB, BGR):
            raise ValueError(f"BrushNetModel: unknown channel order {brushnet_conditioning_channel_order!r}.")
        blocks = len(down_block_types)
        # diffusers' SD1.5 naming quirk: `attention_head_dim` there is the number of heads.
        heads = _per_block(num_attention_heads or attention_head_dim, blocks)
        only_cross = _per_block(only_cross_attention, blocks)
        transformer_layers = _per_block(transformer_layers_per_block, blocks)
        time_embed_dim = block_out_channels[0] * TIME_EMBED_MULT

        self.conv_in_condition = nn.Conv2d(
            in_channels + conditioning_channels, block_out_channels[0], CONV_IN_KERNEL, padding=CONV_IN_KERNEL // 2
        )
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim, act_fn=act_fn)

        common = dict(
            temb_channels=time_embed_dim,
            resnet_eps=norm_eps,
            resnet_act_fn=act_fn,
            resnet_groups=norm_num_groups,
            cross_attention_dim=cross_attention_dim,
            use_linear_projection=use_linear_projection,
            upcast_attention=upcast_attention,
            resnet_time_scale_shift=resnet_time_scale_shift,
        )
        self.down_blocks = nn.ModuleList()
        self.brushnet_down_blocks = nn.ModuleList([_zero_conv(block_out_channels[0])])
        out_channels = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            in_ch, out_channels = out_channels, block_out_channels[i]
            block = get_down_block(
                block_type,
                num_layers=layers_per_block,
                in_channels=in_ch,
                out_channels=out_channels,
                add_downsample=i < blocks - 1,
                transformer_layers_per_block=transformer_layers[i],
                num_attention_heads=heads[i],
                attention_head_dim=out_channels // heads[i],
                downsample_padding=downsample_padding,
                only_cross_attention=only_cross[i],
                **common,
            )
            self.down_blocks.append(block)
            self.brushnet_down_blocks.extend(_zero_conv(out_channels) for _ in range(num_down_points(block)))

        self.brushnet_mid_block = _zero_conv(block_out_channels[-1])
        self.mid_block = UNetMidBlock2DCrossAttn(
            in_channels=block_out_channels[-1],
            output_scale_factor=mid_block_scale_factor,
            num_attention_heads=heads[-1],
            transformer_layers_per_block=transformer_layers[-1],
            **common,
        )

        self.up_blocks = nn.ModuleList()
        self.brushnet_up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        out_channels = reversed_channels[0]
        for i, block_type in enumerate(up_block_types):
            prev_channels, out_channels = out_channels, reversed_channels[i]
            block = get_up_block(
                block_type,
                num_layers=layers_per_block + 1,
                in_channels=reversed_channels[min(i + 1, blocks - 1)],
                out_channels=out_channels,
                prev_output_channel=prev_channels,
                add_upsample=i < blocks - 1,
                resolution_idx=i,
                transformer_layers_per_block=transformer_layers[::-1][i],
                num_attention_heads=heads[::-1][i],
                attention_head_dim=out_channels // heads[::-1][i],
                only_cross_attention=only_cross[::-1][i],
                **common,
            )
            self.up_blocks.append(block)
            self.brushnet_up_blocks.extend(_zero_conv(out_channels) for _ in range(num_up_points(block)))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        brushnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> BrushNetOutput | tuple:
        """Residuals for unet_main.

        sample [F, 4, h, w] noisy latents; encoder_hidden_states [F, S, D] (one row per frame); brushnet_cond
        [F, 5, h, w] = masked-image latents + mask channel (1 = known pixel).
        """
        if self.config.brushnet_conditioning_channel_order == BGR:
            brushnet_cond = torch.flip(brushnet_cond, dims=[1])
        temb = timestep_embedding(self, timestep, sample.shape[0], sample)
        hidden = self.conv_in_condition(torch.cat([sample, brushnet_cond], dim=1))

        skips: tuple[torch.Tensor, ...] = (hidden,)
        for block in self.down_blocks:
            hidden, block_skips = down_block_forward(
                block, hidden, temb, encoder_hidden_states, cross_attention_kwargs=cross_attention_kwargs
            )
            skips += block_skips
        down_features = skips

        hidden = self.mid_block(
            hidden, temb, encoder_hidden_states=encoder_hidden_states, cross_attention_kwargs=cross_attention_kwargs
        )
        mid_feature = hidden

        up_features: tuple[torch.Tensor, ...] = ()
        for block in self.up_blocks:
            count = len(block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            # Released BrushNet: always upsample to the next skip's size (latent sides need not be multiples of 8).
            size = skips[-1].shape[2:] if skips else None
            hidden, outputs = up_block_forward(
                block, hidden, block_skips, temb, encoder_hidden_states,
                upsample_size=size, cross_attention_kwargs=cross_attention_kwargs,
            )
            up_features += outputs

        down = tuple(conv(x) * conditioning_scale for conv, x in zip(self.brushnet_down_blocks, down_features))
        mid = self.brushnet_mid_block(mid_feature) * conditioning_scale
        up = tuple(conv(x) * conditioning_scale for conv, x in zip(self.brushnet_up_blocks, up_features))
        if not return_dict:
            return down, mid, up
        return BrushNetOutput(down_block_res_samples=down, mid_block_res_sample=mid, up_block_res_samples=up)
