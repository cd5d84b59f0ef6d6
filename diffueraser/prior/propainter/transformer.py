"""ProPainter's temporal sparse transformer: soft split/composition of overlapping patches into
tokens, and window attention that looks beyond its window only where the mask is.

Windows touching a hole (in any local frame) attend to their own window, four rolled
neighbourhoods and pooled global tokens of every `t_dilation`-th frame; the other windows attend
only within themselves, frame by frame. Module and parameter names follow `ProPainter.pth`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

Size2 = tuple[int, int]


def _tokens_per_side(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class SoftSplit(nn.Module):
    """Overlapping kernel×kernel patches of a feature map, each embedded as one token."""

    def __init__(self, channel: int, hidden: int, kernel_size: Size2, stride: Size2, padding: Size2):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.embedding = nn.Linear(kernel_size[0] * kernel_size[1] * channel, hidden)

    def forward(self, x: torch.Tensor, batch: int, output_size: Size2) -> torch.Tensor:
        """x [B·T, C, H, W] → tokens [B, T, h, w, hidden]."""
        f_h, f_w = (
            _tokens_per_side(output_size[i], self.kernel_size[i], self.stride[i], self.padding[i]) for i in range(2)
        )
        feat = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        feat = self.embedding(feat.transpose(1, 2))
        return feat.view(batch, -1, f_h, f_w, feat.shape[-1])


class SoftComp(nn.Module):
    """Tokens back to a feature map: each token's patch is summed in place, then a 3x3 conv."""

    def __init__(self, channel: int, hidden: int, kernel_size: Size2, stride: Size2, padding: Size2):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.embedding = nn.Linear(hidden, kernel_size[0] * kernel_size[1] * channel)
        self.bias_conv = nn.Conv2d(channel, channel, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor, t: int, output_size: Size2) -> torch.Tensor:
        """tokens [B, T, h, w, hidden] → [B·T, C, H, W]."""
        b = x.shape[0]
        feat = self.embedding(x.reshape(b, -1, x.shape[-1]))
        feat = feat.view(b * t, -1, feat.shape[-1]).transpose(1, 2)
        feat = F.fold(feat, output_size, self.kernel_size, padding=self.padding, stride=self.stride)
        return self.bias_conv(feat)


class FusionFeedForward(nn.Module):
    """MLP whose hidden tokens are folded to pixels, averaged where patches overlap, and unfolded."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: Size2, stride: Size2, padding: Size2):
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(dim, hidden_dim))
        self.fc2 = nn.Sequential(nn.GELU(), nn.Linear(hidden_dim, dim))
        self.fold_args = dict(kernel_size=kernel_size, padding=padding, stride=stride)

    def forward(self, x: torch.Tensor, output_size: Size2) -> torch.Tensor:
        """x [B, N, dim] with N = T·h·w tokens of a map of `output_size` pixels."""
        k = self.fold_args["kernel_size"]
        n_vecs = 1
        for i in range(2):
            n_vecs *= _tokens_per_side(output_size[i], k[i], self.fold_args["stride"][i], self.fold_args["padding"][i])
        x = self.fc1(x)
        b, n, c = x.shape
        ones = x.new_ones(1, k[0] * k[1], n_vecs)
        overlap = F.fold(ones, output_size, **self.fold_args)
        x = F.fold(x.view(-1, n_vecs, c).transpose(1, 2), output_size, **self.fold_args)
        x = F.unfold(x / overlap, **self.fold_args).transpose(1, 2).reshape(b, n, c)
        return self.fc2(x)


def _windows(x: torch.Tensor, window: Size2, n_head: int) -> torch.Tensor:
    """[B, T, H, W, C] → [B, n_windows, n_head, T, window tokens, C / n_head]."""
    b, t, h, w, c = x.shape
    x = x.view(b, t, h // window[0], window[0], w // window[1], window[1], n_head, c // n_head)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, (h // window[0]) * (w // window[1]), n_head, t, window[0] * window[1], c // n_head)


class SparseWindowAttention(nn.Module):
    """Window attention; windows with holes also see rolled neighbours and pooled tokens."""

    def __init__(self, dim: int, n_head: int, window_size: Size2, pool_size: Size2):
        super().__init__()
        self.key = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.n_head = n_head
        self.window_size = window_size
        self.pool_layer = nn.Conv2d(dim, dim, kernel_size=pool_size, stride=pool_size, groups=dim)
        self.expand_size = tuple((s + 1) // 2 for s in window_size)
        self.register_buffer("valid_ind_rolled", self._rolled_token_indices())

    def _rolled_token_indices(self) -> torch.Tensor:
        """Which tokens of the four rolled copies of a window lie outside the window itself."""
        (wh, ww), (eh, ew) = self.window_size, self.expand_size
        parts = []
        for rows, cols in ((slice(None, -eh), slice(None, -ew)), (slice(None, -eh), slice(ew, None)),
                           (slice(eh, None), slice(None, -ew)), (slice(eh, None), slice(ew, None))):
            m = torch.ones(wh, ww)
            m[rows, cols] = 0
            parts.append(m)
        return torch.stack(parts).flatten().nonzero().view(-1)

    def _token_tables(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat token indices of an h×w grid (multiples of the window): each window's own tokens
        [n_windows, wh·ww], and those of its four diagonally rolled neighbourhoods outside the
        window [n_windows, len(valid_ind_rolled)] (rolls wrap around, as `torch.roll` does)."""
        grid = torch.arange(h * w, device=device).view(1, 1, h, w, 1)
        own = _windows(grid, self.window_size, 1).reshape(-1, self.window_size[0] * self.window_size[1])
        eh, ew = self.expand_size
        rolls = [torch.roll(grid, shifts=s, dims=(2, 3)) for s in ((-eh, -ew), (-eh, ew), (eh, -ew), (eh, ew))]
        rolled = torch.cat([_windows(r, self.window_size, 1) for r in rolls], dim=4).reshape(own.shape[0], -1)
        return own, rolled[:, self.valid_ind_rolled.to(device)]

    def _pooled(self, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        """Pooled tokens of each whole frame, [B, n_head, T, P, C / n_head]."""
        b, t, h, w, c = x.shape
        pooled = self.pool_layer(x.reshape(b * t, h, w, c).permute(0, 3, 1, 2))
        p_h, p_w = pooled.shape[-2:]
        pooled = proj(pooled.permute(0, 2, 3, 1).reshape(b, t, p_h, p_w, c))
        return pooled.view(b, t, p_h * p_w, self.n_head, c // self.n_head).permute(0, 3, 1, 2, 4)

    def _gather(self, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Tokens `index` [n, k] of a [T, h·w, C] → [n, n_head, T, k, C / n_head]."""
        t, _, c = a.shape
        n, k = index.shape
        g = a[:, index.reshape(-1)].view(t, n, k, self.n_head, c // self.n_head)
        return g.permute(1, 3, 0, 2, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        """x [B, T, h, w, C] tokens; mask [B, L, h, w, 1] of the L local frames; t_index: key frames."""
        b, t, h, w, c = x.shape
        wh, ww = self.window_size
        n_wh, n_ww = math.ceil(h / wh), math.ceil(w / ww)
        new_h, new_w = n_wh * wh, n_ww * ww
        if new_h != h or new_w != w:
            x = F.pad(x, (0, 0, 0, new_w - w, 0, new_h - h))
            mask = F.pad(mask, (0, 0, 0, new_w - w, 0, new_h - h))
        q, k, v = (f(x).view(b, t, new_h * new_w, c) for f in (self.query, self.key, self.value))
        own, rolled = self._token_tables(new_h, new_w, x.device)
        ch = c // self.n_head

        l_t = mask.shape[1]
        hole = F.max_pool2d(mask.reshape(b * l_t, new_h, new_w), self.window_size, self.window_size)
        hole = hole.view(b, l_t, n_wh * n_ww).sum(1)

        out = torch.empty_like(q)
        pooled_k = pooled_v = None
        if bool((hole != 0).any()):
            pooled_k, pooled_v = self._pooled(x, self.key), self._pooled(x, self.value)
        for i in range(b):
            sel = hole[i].nonzero().view(-1)
            if len(sel):
                # windows with holes: own + rolled-neighbourhood + pooled tokens of the key frames
                n = len(sel)
                keys_at = torch.cat((own[sel], rolled[sel]), dim=1)
                kt, vt = k[i, t_index], v[i, t_index]
                keys = torch.cat((self._gather(kt, keys_at), pooled_k[i, :, t_index].expand(n, -1, -1, -1, -1)), 3)
                vals = torch.cat((self._gather(vt, keys_at), pooled_v[i, :, t_index].expand(n, -1, -1, -1, -1)), 3)
                qs = self._gather(q[i], own[sel])
                y = F.scaled_dot_product_attention(
                    qs.reshape(n, self.n_head, -1, ch), keys.reshape(n, self.n_head, -1, ch),
                    vals.reshape(n, self.n_head, -1, ch),
                )
                out[i][:, own[sel].reshape(-1)] = y.view(n, self.n_head, t, wh * ww, ch).permute(2, 0, 3, 1, 4).reshape(t, -1, c)
            rest = (hole[i] == 0).nonzero().view(-1)
            if len(rest):
                # windows without holes: attention inside the window, frame by frame
                idx = own[rest]
                y = F.scaled_dot_product_attention(self._gather(q[i], idx), self._gather(k[i], idx), self._gather(v[i], idx))
                out[i][:, idx.reshape(-1)] = y.permute(2, 0, 3, 1, 4).reshape(t, -1, c)

        out = out.view(b, t, new_h, new_w, c)[:, :, :h, :w]
        return self.proj(out)


class TemporalSparseTransformer(nn.Module):
    """Pre-norm block: sparse window attention, then the fusion feed-forward."""

    def __init__(self, dim: int, n_head: int, window_size: Size2, pool_size: Size2, hidden_dim: int,
                 kernel_size: Size2, stride: Size2, padding: Size2):
        super().__init__()
        self.attention = SparseWindowAttention(dim, n_head, window_size, pool_size)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FusionFeedForward(dim, hidden_dim, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor, fold_size: Size2, mask: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = x.shape
        x = x + self.attention(self.norm1(x), mask, t_index)
        y = self.norm2(x)
        return x + self.mlp(y.view(b, t * h * w, c), fold_size).view(b, t, h, w, c)


class TemporalSparseTransformerBlock(nn.Module):
    """`depths` transformer blocks; block i takes its keys from frames i mod t_dilation, i mod t_dilation + t_dilation, …"""

    def __init__(self, dim: int, n_head: int, window_size: Size2, pool_size: Size2, depths: int,
                 hidden_dim: int, kernel_size: Size2, stride: Size2, padding: Size2):
        super().__init__()
        self.transformer = nn.Sequential(*[
            TemporalSparseTransformer(dim, n_head, window_size, pool_size, hidden_dim, kernel_size, stride, padding)
            for _ in range(depths)
        ])
        self.depths = depths

    def forward(self, x: torch.Tensor, fold_size: Size2, mask: torch.Tensor, t_dilation: int = 2) -> torch.Tensor:
        if self.depths % t_dilation:
            raise ValueError(f"t_dilation {t_dilation} must divide the depth {self.depths}")
        t = x.shape[1]
        for i, block in enumerate(self.transformer):
            x = block(x, fold_size, mask, torch.arange(i % t_dilation, t, t_dilation, device=x.device))
        return x
