"""RAFT optical flow ("things" variant, as released with ProPainter) and bidirectional clip flows.

Images are in [-1, 1] (no further normalisation); flows are in pixels, channel 0 = x. The
network works at 1/8 resolution: an all-pairs correlation pyramid between the two frames'
features is looked up around the current flow estimate, a GRU refines the flow `iters` times,
and a learnt convex combination upsamples it to full resolution.

Beyond the released code: inputs are padded (edge replicate) to multiples of 8 and to at least
`MIN_SIDE` pixels, and the flow is cropped back. The released RAFT returns NaN below 128 pixels
(its coarsest correlation level becomes one cell wide and the lookup divides by zero); sizes that
are already multiples of 8 and at least 128 are not touched, so they match the released flows.
"""
from __future__ import annotations

import math
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .raft_blocks import (
    CONTEXT_DIM,
    CORR_LEVELS,
    CORR_RADIUS,
    HIDDEN_DIM,
    UPSAMPLE_FACTOR,
    UPSAMPLE_TAPS,
    BasicEncoder,
    UpdateBlock,
)

FEATURE_DIM = 256
STRIDE = UPSAMPLE_FACTOR
MIN_SIDE = STRIDE * 2 ** (CORR_LEVELS - 1) * 2
"""Smallest side RAFT runs at: the coarsest correlation level must be at least 2 cells wide."""
CORR_BUDGET_BYTES = 512 * 2**20
"""Memory the correlation pyramids of one batch of frame pairs may take (float32)."""
ENCODER_BATCH = 8
"""Frames encoded at once by `bidirectional_flows` (bounds the full-resolution activations)."""
DATA_PARALLEL_PREFIX = "module."


class CorrelationPyramid:
    """All-pairs feature correlation of two frames, average-pooled into `levels` levels.

    Level 0 holds, for every pixel of frame 1, its dot product (/ sqrt(dim)) with every pixel of
    frame 2: [N·h·w, 1, h, w], i.e. O((hw)^2) memory per pair. Kept in float32.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, levels: int = CORR_LEVELS, radius: int = CORR_RADIUS):
        n, dim, h, w = fmap1.shape
        f1 = fmap1.float().flatten(2).transpose(1, 2)
        f2 = fmap2.float().flatten(2)
        corr = torch.matmul(f1, f2).div_(math.sqrt(dim)).view(n * h * w, 1, h, w)
        self.pyramid = [corr]
        for _ in range(levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)
        self.radius = radius
        steps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=fmap1.device)
        # Released quirk: the window's row index moves x and its column index moves y (the
        # (dy, dx) meshgrid is added to (x, y) coordinates); the weights were trained that way.
        self.window = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).view(1, 2 * radius + 1, 2 * radius + 1, 2)

    @staticmethod
    def bytes_per_pair(height: int, width: int, levels: int = CORR_LEVELS) -> int:
        """Memory of one pair's pyramid for features of height x width (float32)."""
        cells = height * width
        total, h, w = 0, height, width
        for _ in range(levels):
            total += cells * h * w * 4
            h, w = h // 2, w // 2
        return total

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """Correlations in a (2r+1)^2 window around `coords` [N, 2, h, w] (pixels of frame 2) at every level.

        Returns [N, levels·(2r+1)^2, h, w]; samples outside frame 2 read zero.
        """
        n, _, h, w = coords.shape
        centres = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
        out = []
        for level, corr in enumerate(self.pyramid):
            points = centres / 2**level + self.window
            size = torch.tensor([corr.shape[-1] - 1, corr.shape[-2] - 1], dtype=points.dtype, device=points.device)
            grid = 2 * points / size - 1
            sampled = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out.append(sampled.view(n, h, w, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()


def coords_grid(n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Pixel coordinates [n, 2, height, width], channel 0 = x."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys]).expand(n, 2, height, width)


def raft_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding that makes a frame a size RAFT handles: multiples of 8, >= MIN_SIDE."""

    def split(size: int) -> tuple[int, int]:
        target = max(MIN_SIDE, -(-size // STRIDE) * STRIDE)
        extra = target - size
        return extra // 2, extra - extra // 2

    top, bottom = split(height)
    left, right = split(width)
    return left, right, top, bottom


class RAFT(nn.Module):
    """RAFT with the released `raft-things.pth` layout (keys without the `module.` prefix)."""

    def __init__(self) -> None:
        super().__init__()
        self.fnet = BasicEncoder(FEATURE_DIM, "instance")
        self.cnet = BasicEncoder(HIDDEN_DIM + CONTEXT_DIM, "batch")
        self.update_block = UpdateBlock()

    @property
    def dtype(self) -> torch.dtype:
        return self.fnet.conv1.weight.dtype

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Matching features [N, 256, H/8, W/8] of images [N, 3, H, W] (sizes already RAFT-sized)."""
        return self.fnet(images.to(self.dtype))

    def context(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial GRU state and the context input, from the first image of each pair."""
        net, inp = torch.split(self.cnet(images.to(self.dtype)), [HIDDEN_DIM, CONTEXT_DIM], dim=1)
        return torch.tanh(net), torch.relu(inp)

    def iterate(
        self, fmap1: torch.Tensor, fmap2: torch.Tensor, net: torch.Tensor, inp: torch.Tensor, iters: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (flow at 1/8 resolution in coarse pixels, float32; GRU state) after each refinement."""
        corr_fn = CorrelationPyramid(fmap1, fmap2)
        n, _, h, w = fmap1.shape
        coords0 = coords_grid(n, h, w, fmap1.device)
        coords1 = coords0.clone()
        for _ in range(iters):
            corr = corr_fn(coords1).to(net.dtype)
            net, delta = self.update_block(net, inp, corr, (coords1 - coords0).to(net.dtype))
            coords1 = coords1 + delta.float()
            yield coords1 - coords0, net

    def upsample(self, flow: torch.Tensor, net: torch.Tensor) -> torch.Tensor:
        """Full-resolution flow in pixels: each fine pixel is a softmax-weighted mix of its 3x3 coarse neighbours."""
        n, _, h, w = flow.shape
        f = UPSAMPLE_FACTOR
        weights = self.update_block.upsample_mask(net).float().view(n, 1, UPSAMPLE_TAPS, f, f, h, w).softmax(dim=2)
        taps = F.unfold(f * flow, [3, 3], padding=1).view(n, 2, UPSAMPLE_TAPS, 1, 1, h, w)
        up = (weights * taps).sum(dim=2)  # [n, 2, f, f, h, w]
        return up.permute(0, 1, 4, 2, 5, 3).reshape(n, 2, f * h, f * w)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 20) -> torch.Tensor:
        """Flow [N, 2, H, W] (float32, pixels) that maps image1 [N, 3, H, W] onto image2."""
        pad = raft_padding(*image1.shape[-2:])
        image1, image2 = (F.pad(x, pad, mode="replicate") for x in (image1, image2))
        fmaps = self.features(torch.cat([image1, image2]))
        fmap1, fmap2 = fmaps.chunk(2)
        net, inp = self.context(image1)
        flow, net = _last(self.iterate(fmap1, fmap2, net, inp, iters))
        return _crop(self.upsample(flow, net), pad)


def _last(it: Iterator):
    item = None
    for item in it:
        pass
    if item is None:
        raise ValueError("RAFT needs at least one iteration")
    return item


def _crop(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


@torch.no_grad()
def bidirectional_flows(
    raft: RAFT, frames: torch.Tensor, iters: int = 20, corr_budget_bytes: int = CORR_BUDGET_BYTES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward flows between consecutive frames of a clip.

    frames [B, T, 3, H, W] in [-1, 1] → (forward, backward), each [B, T-1, 2, H, W] float32 in
    pixels: forward k maps frame k → k+1, backward k maps frame k+1 → k. Each frame is encoded
    once; the 2·(T-1) pairs are refined in batches whose correlation pyramids fit in
    `corr_budget_bytes` (at least one pair per batch).
    """
    b, t, c, h, w = frames.shape
    device = next(raft.parameters()).device
    if t < 2:
        empty = frames.new_zeros(b, 0, 2, h, w, dtype=torch.float32, device=device)
        return empty, empty.clone()
    pad = raft_padding(h, w)
    images = frames.reshape(b * t, c, h, w)
    fmaps, nets, inps = [], [], []
    for chunk in images.split(ENCODER_BATCH):
        chunk = F.pad(chunk.to(device=device, dtype=raft.dtype), pad, mode="replicate")
        fmaps.append(raft.features(chunk))
        net, inp = raft.context(chunk)
        nets.append(net)
        inps.append(inp)
    fmaps, nets, inps = torch.cat(fmaps), torch.cat(nets), torch.cat(inps)

    first = torch.arange(t - 1, device=device)
    starts = (torch.arange(b, device=device) * t).view(b, 1)
    src_fwd = (starts + first).reshape(-1)
    src = torch.cat([src_fwd, src_fwd + 1])
    dst = torch.cat([src_fwd + 1, src_fwd])
    per_pair = CorrelationPyramid.bytes_per_pair(*fmaps.shape[-2:])
    batch = max(1, corr_budget_bytes // per_pair)
    flows = []
    for s, d in zip(src.split(batch), dst.split(batch)):
        flow, net = _last(raft.iterate(fmaps[s], fmaps[d], nets[s], inps[s], iters))
        flows.append(_crop(raft.upsample(flow, net), pad))
    flows = torch.cat(flows).view(2, b, t - 1, 2, h, w)
    return flows[0], flows[1]


def strip_data_parallel_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`raft-things.pth` was saved from `DataParallel`: drop the `module.` prefix of its keys."""
    n = len(DATA_PARALLEL_PREFIX)
    return {(k[n:] if k.startswith(DATA_PARALLEL_PREFIX) else k): v for k, v in state_dict.items()}
