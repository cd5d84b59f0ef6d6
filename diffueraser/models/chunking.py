"""Feed-forward chunking: every transformer feed-forward of a denoiser runs over slices of its tokens.

The GEGLU feed-forward of SD1.5 widens each token eightfold; over a 22-frame window at 576×320 its
temporaries reach 1.3 GB, the largest single allocation of a denoising step. The feed-forward treats
tokens independently, so slicing leaves every value as it was and bounds the temporaries by the
slice. diffusers' own `enable_forward_chunking` needs the token count to be a multiple of the chunk
at every resolution, which video windows rarely are.
"""
from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from torch import nn

FEED_FORWARD_TOKENS = 8192
"""Tokens per feed-forward slice: large enough for full-speed matrix products, 8192 × 2560 floats of temporaries."""


def _sliced(ff: FeedForward, tokens: int, hidden: torch.Tensor) -> torch.Tensor:
    flat = hidden.reshape(-1, hidden.shape[-1])
    if flat.shape[0] <= tokens:
        return ff.unchunked_forward(hidden)
    parts = [ff.unchunked_forward(flat[start : start + tokens]) for start in range(0, flat.shape[0], tokens)]
    return torch.cat(parts).reshape(*hidden.shape[:-1], parts[0].shape[-1])


def chunk_feed_forward(model: nn.Module, tokens: int = FEED_FORWARD_TOKENS) -> int:
    """Make every diffusers `FeedForward` in `model` process at most `tokens` tokens at a time.

    Idempotent (a second call only changes the slice size); returns how many feed-forwards it set.
    """
    if tokens < 1:
        raise ValueError(f"tokens must be at least 1, got {tokens}")
    count = 0
    for module in model.modules():
        if isinstance(module, FeedForward):
            if not hasattr(module, "unchunked_forward"):
                module.unchunked_forward = module.forward
            module.forward = lambda hidden, _ff=module: _sliced(_ff, tokens, hidden)
            count += 1
    return count
