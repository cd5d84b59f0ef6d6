"""`grid_sample` that reads half-precision inputs at float32 positions.

`F.grid_sample` wants its input and its grid in one dtype. A grid in half precision cannot
address pixels exactly: normalised coordinates near ±1 are spaced 2^-8 apart in bfloat16
(more than a pixel at 576 px wide) and 2^-11 in float16. So the prior's networks, which run
in half precision on a GPU, sample through this function: the grid stays float32, the input is
upcast for the lookup and the result cast back to the input's dtype. On every device, not only
on the CPU (where half `grid_sample` also returns garbage in torch 2.13): the positions are what
matters, and the upcast is a small share of the networks' work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["grid_sample_float32"]


def grid_sample_float32(
    x: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
    align_corners: bool = False,
) -> torch.Tensor:
    """`F.grid_sample(x, grid, ...)` computed in float32 (or wider); the result has `x`'s dtype.

    Float32 arguments are passed through unchanged (same values as a direct call).
    """
    work = torch.promote_types(x.dtype, torch.float32)
    out = F.grid_sample(x.to(work), grid.to(work), mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return out.to(x.dtype)
