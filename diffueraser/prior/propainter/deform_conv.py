"""Modulated deformable convolution (DCNv2) in plain torch, with torchvision's semantics.

ProPainter's two alignment modules need `torchvision.ops.deform_conv2d`. torchvision's wheels
rarely match the installed torch, so this module samples the deformed kernel taps itself
(bilinear, zero outside the image, via `grid_sample`) and contracts them with the weight in one
matrix product. torchvision's compiled kernel is used instead whenever it can be imported.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from .sampling import grid_sample_float32

Pair = Union[int, tuple[int, int]]

try:  # the compiled kernel, when a matching torchvision is installed
    from torchvision.ops import deform_conv2d as _torchvision_deform_conv2d
except Exception:  # noqa: BLE001 - missing, or built for another torch
    _torchvision_deform_conv2d = None

USE_TORCHVISION = _torchvision_deform_conv2d is not None
"""Whether `deform_conv2d` dispatches to torchvision's kernel (tests may switch it off)."""


def _pair(v: Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Deformable convolution exactly as `torchvision.ops.deform_conv2d` computes it.

    input [B, C, H, W]; weight [O, C / groups, kh, kw]; offset [B, 2·G·kh·kw, Ho, Wo] holding a
    (dy, dx) pair per offset group G and kernel tap (taps in row-major order); mask
    [B, G·kh·kw, Ho, Wo] scales each sampled tap (None: all ones). Taps falling outside the
    image read zeros. Returns [B, O, Ho, Wo] in the input's dtype; sampling positions are
    float32 whatever the dtypes (`offset` may be float32 with a half-precision input).
    """
    if USE_TORCHVISION and _torchvision_deform_conv2d is not None:
        # torchvision's kernel computes positions in its arguments' dtype: run it in float32.
        work = torch.promote_types(input.dtype, torch.float32)
        out = _torchvision_deform_conv2d(
            input.to(work), offset.to(work), weight.to(work), None if bias is None else bias.to(work),
            stride=stride, padding=padding, dilation=dilation, mask=None if mask is None else mask.to(work),
        )
        return out.to(input.dtype)
    return deform_conv2d_torch(input, offset, weight, bias, stride, padding, dilation, mask)


def deform_conv2d_torch(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The plain-torch implementation behind `deform_conv2d` (same arguments)."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    b, c, h, w = input.shape
    out_ch, c_per_group, kh, kw = weight.shape
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    groups = c // c_per_group
    offset_groups = offset.shape[1] // (2 * taps)
    if offset.shape[1] != 2 * offset_groups * taps or c % offset_groups or c % c_per_group:
        raise ValueError(
            f"deform_conv2d: offset has {offset.shape[1]} channels, input {c}, weight {tuple(weight.shape)}: "
            "expected 2·groups·kh·kw offset channels and channels divisible by the groups"
        )
    # Sampling positions in pixels: the regular grid of each tap plus its learnt offset, in
    # float32 whatever the input's dtype (a half-precision position is off by up to a pixel).
    pos = torch.promote_types(input.dtype, torch.float32)
    base_y = torch.arange(ho, device=input.device, dtype=pos) * sh - ph
    base_x = torch.arange(wo, device=input.device, dtype=pos) * sw - pw
    tap_y = torch.arange(kh, device=input.device, dtype=pos).repeat_interleave(kw) * dh
    tap_x = torch.arange(kw, device=input.device, dtype=pos).repeat(kh) * dw
    off = offset.to(pos).view(b, offset_groups, taps, 2, ho, wo)
    y = off[:, :, :, 0] + (tap_y.view(taps, 1, 1) + base_y.view(1, ho, 1))
    x = off[:, :, :, 1] + (tap_x.view(taps, 1, 1) + base_x.view(1, 1, wo))

    # grid_sample with align_corners=False maps pixel p to (2p + 1) / size - 1; with zero padding
    # its bilinear weights equal torchvision's (corners outside the image contribute nothing).
    grid = torch.stack(((2 * x + 1) / w - 1, (2 * y + 1) / h - 1), dim=-1)
    grid = grid.view(b * offset_groups, taps * ho, wo, 2)
    feats = input.reshape(b * offset_groups, c // offset_groups, h, w)
    cols = grid_sample_float32(feats, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(b, offset_groups, c // offset_groups, taps, ho, wo)
    if mask is not None:
        cols = cols * mask.view(b, offset_groups, 1, taps, ho, wo)

    # Contract (channel, tap) with the weight, per convolution group.
    cols = cols.reshape(b, groups, c_per_group * taps, ho * wo)
    wmat = weight.reshape(groups, out_ch // groups, c_per_group * taps)
    out = torch.matmul(wmat.unsqueeze(0), cols).reshape(b, out_ch, ho, wo)
    if bias is not None:
        out = out + bias.view(1, out_ch, 1, 1)
    return out
