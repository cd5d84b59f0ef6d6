"""Flow warping and ProPainter's (non-learnable) image propagation.

Pixels visible in neighbouring frames are carried into the holes along the completed flows,
once backward in time and once forward, accepting a pixel only where the forward and backward
flows agree and the source itself was known.
"""
from __future__ import annotations

import torch

from .sampling import grid_sample_float32

FB_ALPHA1 = 0.01
"""Forward-backward check: tolerance proportional to the squared flow magnitudes."""
FB_ALPHA2 = 0.5
"""Forward-backward check: constant tolerance, in squared pixels."""
MASK_THRESHOLD = 0.1
"""A warped (soft) mask counts as hole above this value."""
FEATURE_CLAMP = 1.0
"""DiffuEraser's copy clamps every flow-warped feature map to [-1, 1]."""


def flow_warp(x: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward-warp `x` [N, C, H, W] with `flow` [N, 2, H, W] in pixels (channel 0 = x, 1 = y).

    Output pixel p reads x at p + flow(p) (`grid_sample`, corners aligned, zeros outside).
    The sampling grid is computed and used in float32 whatever the dtype of `x`.
    """
    if x.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"flow_warp: input is {tuple(x.shape[-2:])} but flow is {tuple(flow.shape[-2:])}")
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=flow.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=torch.float32).view(1, 1, w)
    flow = flow.float()
    gx = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=3)
    return grid_sample_float32(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def flow_consistency(flow_fw: torch.Tensor, flow_bw: torch.Tensor) -> torch.Tensor:
    """1 where following `flow_fw` and then `flow_bw` comes back near the start, else 0.

    Both flows are [N, 2, H, W]; the result is [N, 1, H, W] in their dtype, the test is made in
    float32 (squared pixel distances lose the sub-pixel part in half precision).
    """
    fw = flow_fw.float()
    bw_warped = flow_warp(flow_bw.float(), fw)
    diff = fw + bw_warped
    mag = fw.square().sum(1, keepdim=True) + bw_warped.square().sum(1, keepdim=True)
    return (diff.square().sum(1, keepdim=True) < FB_ALPHA1 * mag + FB_ALPHA2).to(flow_fw)


def _binarize(m: torch.Tensor) -> torch.Tensor:
    return (m > MASK_THRESHOLD).to(m)


def _propagate_one_way(
    frames: list[torch.Tensor],
    masks: list[torch.Tensor],
    flows_prop: torch.Tensor,
    flows_check: torch.Tensor,
    order: range,
    flow_index: list[int],
    mode: str,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One sweep over `order`: fill each frame's holes from the running propagated frame."""
    out_frames: list[torch.Tensor] = [frames[0]] * len(frames)
    out_masks: list[torch.Tensor] = [masks[0]] * len(frames)
    prop = mask_prop = None
    for i, idx in enumerate(order):
        cur, mask_cur = frames[idx], masks[idx]
        if i == 0:
            prop, mask_prop = cur, mask_cur
        else:
            flow = flows_prop[:, flow_index[i]]
            valid = flow_consistency(flow, flows_check[:, flow_index[i]]).to(cur)
            warped = flow_warp(prop, flow, mode).clamp(-FEATURE_CLAMP, FEATURE_CLAMP)
            source_known = 1 - _binarize(flow_warp(mask_prop, flow))
            take = _binarize(mask_cur * valid * source_known)
            prop = take * warped + (1 - take) * cur
            mask_prop = _binarize(mask_cur * (1 - valid * source_known))
        out_frames[idx], out_masks[idx] = prop, mask_prop
    return out_frames, out_masks


def img_propagation(
    masked_frames: torch.Tensor,
    flows_forward: torch.Tensor,
    flows_backward: torch.Tensor,
    masks: torch.Tensor,
    mode: str = "nearest",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill holes with pixels propagated along the flows, backward then forward in time.

    masked_frames [B, T, C, H, W] (holes zeroed), flows [B, T-1, 2, H, W] (forward k: frame k
    to k+1; backward k: frame k+1 to k), masks [B, T, 1, H, W] with 1 = hole. Returns the
    propagated frames [B, T, C, H, W] and the holes left [B, T, 1, H, W].
    """
    t = masked_frames.shape[1]
    frames = list(masked_frames.unbind(1))
    mask_list = list(masks.unbind(1))
    # backward sweep: frame idx reads frame idx+1 through forward flow idx
    back = range(t - 1, -1, -1)
    frames, mask_list = _propagate_one_way(
        frames, mask_list, flows_forward, flows_backward, back, list(back), mode
    )
    # forward sweep on the backward result: frame idx reads frame idx-1 through backward flow idx-1
    fwd = range(t)
    frames, mask_list = _propagate_one_way(
        frames, mask_list, flows_backward, flows_forward, fwd, [i - 1 for i in fwd], mode
    )
    return torch.stack(frames, 1), torch.stack(mask_list, 1)
