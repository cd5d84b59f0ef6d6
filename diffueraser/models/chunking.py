"""Feed-forward chunking: every transformer feed-forward of a denoiser runs over slices of its tokens.

The GEGLU feed-forward of SD1.5 widens each token eightfold; over a 22-frame window at 576×320 its
temporaries reach 1.3 GB, the largest single allocation of a denoising step. The feed-forward treats
tokens independently, so slicing leaves every value as it was and bounds the temporaries by the
slice. diffusers' own `enable_forward_chunking` needs the token count to be a multiple of the chunk
at every resolution, which video windows rarely are.
"""
from __future__ import annotations

import types

import torch
from diffusers.models.attention import FeedForward
from torch import nn

FEED_FORWARD_TOKENS = 8192
"""Tokens per feed-forward slice: large enough for full-speed matrix products, 8192 × 2560 floats of temporaries."""


def _sliced_forward(self: FeedForward, hidden: torch.Tensor) -> torch.Tensor:
    """A FeedForward's own forward, over at most `self.feed_forward_tokens` tokens at a time."""
    whole = type(self).forward
    flat = hidden.reshape(-1, hidden.shape[-1])
    tokens = self.feed_forward_tokens
    if flat.shape[0] <= tokens:
        return whole(self, hidden)
    parts = [whole(self, flat[start : start + tokens]) for start in range(0, flat.shape[0], tokens)]
    return torch.cat(parts).reshape(*hidden.shape[:-1], parts[0].shape[-1])


def chunk_feed_forward(model: nn.Module, tokens: int = FEED_FORWARD_TOKENS) -> int:
    """Make every diffusers `FeedForward` in `model` process at most `tokens` tokens at a time.

    Calling it again only changes the slice size; copies of the model keep slicing their own
    weights. Returns how many feed-forwards it set.
    """
    if tokens < 1:
        raise ValueError(f"tokens must be at least 1, got {tokens}")
    count = 0
    for module in model.modules():
        if isinstance(module, FeedForward):
            module.feed_forward_tokens = tokens
            module.forward = types.MethodType(_sliced_forward, module)
            count += 1
    return count
