"""The ProPainter prior, run the way DiffuEraser's released `Propainter.forward` runs it.

Stages (reference README §6.2): size down to `prior_scale` of the input, ProPainter masks
(cross-shaped dilation), RAFT flows in short clips, flow completion in sub-videos, optional
pre-propagation on a frame subsample (long videos), image propagation in sub-videos, generator
windows of neighbour + reference frames composed into the frames, and resize back.

Memory: frames, masks and intermediate results stay on the host; each network only ever sees one
short clip, sub-video or window on the device, so device memory depends on the window sizes and
the frame size, not on the video length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import cv2
import numpy as np
import torch

from ...errors import InputError
from ...masks import propainter_masks, resize_frames, resize_masks
from ...progress import PRIOR, Progress, ProgressFn, silent
from .flow_completion import RecurrentFlowCompleteNet
from .generator import InpaintGenerator
from .propagation import img_propagation
from .raft import RAFT, bidirectional_flows

SIZE_MULTIPLE = 8
"""Prior sides are floored to multiples of 8."""
SHORT_CLIP_LENGTHS = ((640, 12), (720, 8), (1280, 4))
"""RAFT clip length by the prior's longer side (≤ 640: 12 frames, ...); larger sizes use 2."""
LONGEST_SHORT_CLIP = 2
FLOW_PAD = 5
"""Flows of padding on each side of a flow-completion sub-video."""
IMGPROP_MAX_LENGTH = 100
"""Image propagation works on sub-videos of min(100, subvideo_length) frames ..."""
IMGPROP_PAD = 10
"""... padded by 10 frames on each side."""

STAGE_WEIGHTS = {"flows": 0.3, "complete": 0.1, "pre": 0.1, "propagate": 0.05, "windows": 0.45}
"""Rough share of the run time of each stage, for progress reports."""
STAGE_LABELS = {"flows": "optical flow", "complete": "flow completion", "pre": "pre-propagation",
                "propagate": "propagation", "windows": "transformer windows"}
"""What each stage's progress reports say."""


def short_clip_length(longer_side: int) -> int:
    """RAFT's clip length for a prior whose longer side is `longer_side` (released rule)."""
    for limit, length in SHORT_CLIP_LENGTHS:
        if longer_side <= limit:
            return length
    return LONGEST_SHORT_CLIP


def padded_chunks(length: int, size: int, pad: int) -> list[tuple[int, int, int, int]]:
    """Sub-videos of `size` items padded by `pad` each side: (start, end, keep_from, keep_to).

    Items [start, end) are processed and items [start + keep_from, start + keep_to) kept, so the
    kept parts tile [0, length) exactly (released chunking of flow completion and propagation).
    """
    out = []
    for f in range(0, length, size):
        s, e = max(0, f - pad), min(length, f + size + pad)
        out.append((s, e, f - s, min(length, f + size) - s))
    return out


def reference_indices(center: int, neighbors: list[int], length: int, stride: int, limit: int) -> list[int]:
    """Released `get_ref_index`: every `stride`-th frame not among the neighbours.

    With `limit` > 0 (long videos) only frames within stride·(limit // 2) of `center`, and at
    most limit + 1 of them (the released bound check is off by one).
    """
    if limit < 0:
        return [i for i in range(0, length, stride) if i not in neighbors]
    refs: list[int] = []
    start = max(0, center - stride * (limit // 2))
    end = min(length, center + stride * (limit // 2))
    for i in range(start, end, stride):
        if i not in neighbors:
            if len(refs) > limit:
                break
            refs.append(i)
    return refs


def _to_unit(frames_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] → float32 [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames_u8)).permute(0, 3, 1, 2).float().div(255).mul(2).sub(1)


def _mask_tensor(masks: np.ndarray) -> torch.Tensor:
    """bool [N, H, W] → float32 [N, 1, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(masks)).float().unsqueeze(1)


def prediction_to_uint8(pred: torch.Tensor) -> np.ndarray:
    """Generator output [L, 3, h, w] in [-1, 1] → uint8 [L, h, w, 3], with the released arithmetic:
    (pred + 1) / 2 in the working dtype, × 255 in that dtype, truncated."""
    return (((pred + 1) / 2).cpu() * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def compose_window(
    comp: list[Optional[np.ndarray]], pred_u8: np.ndarray, frames: np.ndarray, holes: np.ndarray, neighbors: list[int]
) -> None:
    """Write one window's prediction into `comp`: inside the holes only, and averaged (0.5/0.5,
    truncated to uint8) with what an earlier window wrote, as released."""
    for j, idx in enumerate(neighbors):
        img = np.where(holes[idx][..., None], pred_u8[j], frames[idx])
        if comp[idx] is None:
            comp[idx] = img
        else:
            comp[idx] = (comp[idx].astype(np.float32) * 0.5 + img.astype(np.float32) * 0.5).astype(np.uint8)


@dataclass
class _Stages:
    """Host-side state of one run at the prior size (T frames, h×w)."""

    frames: np.ndarray  # uint8 [T, h, w, 3]
    holes: np.ndarray  # bool [T, h, w]: ProPainter's dilated mask (flow mask = dilated mask)
    masks: np.ndarray  # bool [T, h, w]: the dilated mask, updated by pre-propagation
    replaced: dict[int, torch.Tensor]  # frame index → pre-propagated frame [3, h, w]


class ProPainterPrior:
    """ProPainter prior: `prior(frames, masks, progress)` → frames with the holes filled.

    The three networks are moved to `device`; the flow completion and the generator run in
    `dtype` (float16 on CUDA as released), RAFT always in float32; flows stay float32 between the
    stages and sampling positions are float32 inside the networks. `weights.load_propainter`
    builds it from the released checkpoint files.
    """

    def __init__(
        self,
        raft: RAFT,
        flow_completion: RecurrentFlowCompleteNet,
        generator: InpaintGenerator,
        *,
        device: Union[str, torch.device],
        dtype: torch.dtype,
        prior_scale: float = 0.6,
        raft_iters: int = 20,
        mask_dilation: int = 8,
        neighbor_length: int = 10,
        ref_stride: int = 10,
        subvideo_length: int = 50,
        max_side: int = 960,
    ):
        if neighbor_length < 2 or ref_stride < 1 or subvideo_length < 1 or raft_iters < 1 or mask_dilation < 0:
            raise InputError(
                "ProPainter settings out of range: neighbor_length >= 2, ref_stride >= 1, subvideo_length >= 1, "
                f"raft_iters >= 1, mask_dilation >= 0 (got {neighbor_length}, {ref_stride}, {subvideo_length}, "
                f"{raft_iters}, {mask_dilation})"
            )
        self.device = torch.device(device)
        self.dtype = dtype
        self.raft = raft.to(device=self.device, dtype=torch.float32).eval()
        self.flow_completion = flow_completion.to(device=self.device, dtype=dtype).eval()
        self.generator = generator.to(device=self.device, dtype=dtype).eval()
        self.prior_scale = prior_scale
        self.raft_iters = raft_iters
        self.mask_dilation = mask_dilation
        self.neighbor_length = neighbor_length
        self.ref_stride = ref_stride
        self.subvideo_length = subvideo_length
        self.max_side = max_side

    # ------------------------------------------------------------------ public

    def prior_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the prior runs at for an input of height×width (released sizing)."""
        ratio = self.prior_scale
        longer = max(height, width)
        if longer > self.max_side:
            ratio = ratio * (self.max_side / longer)
        h, w = int(ratio * height), int(ratio * width)
        return max(SIZE_MULTIPLE, h - h % SIZE_MULTIPLE), max(SIZE_MULTIPLE, w - w % SIZE_MULTIPLE)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, masks: np.ndarray, progress: ProgressFn = silent) -> np.ndarray:
        """Frames uint8 [T, H, W, 3] and masks bool [T, H, W] (True = hole) → uint8 [T, H, W, 3]."""
        self._check(frames, masks)
        report = _Reporter(progress)
        t, height, width = masks.shape
        size = self.prior_size(height, width)
        small = resize_frames(frames, size)
        holes = propainter_masks(resize_masks(masks, size), self.mask_dilation)
        st = _Stages(frames=small, holes=holes, masks=holes.copy(), replaced={})

        flows = self.completed_flows(st.frames, st.holes, report.part("flows"), report.part("complete"))
        if t > self._imgprop_length():
            self.pre_propagate(st, report.part("pre"))
        report.done("pre")
        updated, updated_masks = self.propagate_images(st, flows)
        report.done("propagate")
        comp = self.inpaint_windows(st, updated, updated_masks, flows, report.part("windows"))
        out = self._resize_back(frames, masks, comp, st.holes)
        report.done("windows")
        return out

    # ------------------------------------------------------------------ stages

    @torch.no_grad()
    def completed_flows(
        self, frames: np.ndarray, holes: np.ndarray, on_raft: Callable[[float], None] = lambda f: None,
        on_complete: Callable[[float], None] = lambda f: None, through_dtype: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RAFT flows of the clip, completed inside the holes: two float32 host tensors [T-1, 2, h, w]."""
        raw_f, raw_b = self.raft_flows(frames, on_raft, through_dtype)
        return self.complete_flows(raw_f, raw_b, holes, on_complete)

    @torch.no_grad()
    def raft_flows(
        self, frames: np.ndarray, on_progress: Callable[[float], None] = lambda f: None,
        through_dtype: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward RAFT flows (float32, host) [T-1, 2, h, w], in short clips that overlap by one frame.

        `through_dtype`: round the frames to the working dtype first (the released pre-propagation
        feeds RAFT frames that were already converted to float16).
        """
        t = len(frames)
        clip = short_clip_length(max(frames.shape[1:3]))
        bounds = [(0, t)] if t <= clip else [(max(0, f - 1), min(t, f + clip)) for f in range(0, t, clip)]
        fwd, bwd = [], []
        for i, (s, e) in enumerate(bounds):
            x = _to_unit(frames[s:e])
            if through_dtype:
                x = x.to(self.dtype).float()
            ff, fb = bidirectional_flows(self.raft, x.unsqueeze(0).to(self.device), iters=self.raft_iters)
            fwd.append(ff[0].cpu())
            bwd.append(fb[0].cpu())
            on_progress((i + 1) / len(bounds))
        return torch.cat(fwd), torch.cat(bwd)

    @torch.no_grad()
    def complete_flows(
        self, flows_f: torch.Tensor, flows_b: torch.Tensor, holes: np.ndarray,
        on_progress: Callable[[float], None] = lambda f: None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow completion in sub-videos of `subvideo_length` flows padded by 5; RAFT flows kept outside the holes.

        The network runs in `dtype`; flows go in and come out in float32, so that outside the holes
        they are RAFT's exactly (a bfloat16 flow of 60 px is off by up to 1/8 px).
        """
        n = flows_f.shape[0]
        if n == 0:
            return flows_f, flows_b
        chunks = [(0, n, 0, n)] if n <= self.subvideo_length else padded_chunks(n, self.subvideo_length, FLOW_PAD)
        out_f, out_b = [], []
        for i, (s, e, k0, k1) in enumerate(chunks):
            ff = flows_f[s:e].unsqueeze(0).to(self.device, torch.float32)
            fb = flows_b[s:e].unsqueeze(0).to(self.device, torch.float32)
            m = _mask_tensor(holes[s:e + 1]).unsqueeze(0).to(self.device, self.dtype)
            pred = self.flow_completion.forward_bidirect_flow((ff.to(self.dtype), fb.to(self.dtype)), m)
            cf, cb = self.flow_completion.combine_flow((ff, fb), tuple(p.float() for p in pred), m.float())
            out_f.append(cf[0, k0:k1].cpu())
            out_b.append(cb[0, k0:k1].cpu())
            on_progress((i + 1) / len(chunks))
        return torch.cat(out_f), torch.cat(out_b)

    def _imgprop_length(self) -> int:
        return min(IMGPROP_MAX_LENGTH, self.subvideo_length)

    def _frames_at(self, st: _Stages, s: int, e: int) -> torch.Tensor:
        """Frames [e-s, 3, h, w] in `dtype` (host), pre-propagated ones where there are."""
        x = _to_unit(st.frames[s:e]).to(self.dtype)
        for i, frame in st.replaced.items():
            if s <= i < e:
                x[i - s] = frame
        return x

    def _propagate(
        self, frames: torch.Tensor, masks: torch.Tensor, flows: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image propagation of host frames [T, 3, h, w] / masks [T, 1, h, w] in padded sub-videos."""
        t = frames.shape[0]
        size = self._imgprop_length()
        chunks = [(0, t, 0, t)] if t <= size else padded_chunks(t, size, IMGPROP_PAD)
        out_frames, out_masks = [], []
        for s, e, k0, k1 in chunks:
            x = frames[s:e].unsqueeze(0).to(self.device)
            m = masks[s:e].unsqueeze(0).to(self.device, self.dtype)
            ff = flows[0][s:e - 1].unsqueeze(0).to(self.device)
            fb = flows[1][s:e - 1].unsqueeze(0).to(self.device)
            prop, left = img_propagation(x * (1 - m), ff, fb, m, "nearest")
            filled = x * (1 - m) + prop * m
            out_frames.append(filled[0, k0:k1].cpu())
            out_masks.append(left[0, k0:k1].cpu())
        return torch.cat(out_frames), torch.cat(out_masks)

    @torch.no_grad()
    def pre_propagate(self, st: _Stages, on_progress: Callable[[float], None] = lambda f: None) -> None:
        """Long videos: propagate on every (T // 25)-th frame first and keep those frames filled.

        Released rule: with T > min(100, subvideo_length) frames, sample every
        T // (min(100, subvideo_length) // 2)-th frame, recompute and complete their flows, propagate,
        then replace those frames and their dilated masks by the result.
        """
        t = len(st.frames)
        rate = t // (self._imgprop_length() // 2)
        index = list(range(0, t, rate))
        frames, holes = st.frames[index], st.holes[index]
        flows = self.completed_flows(frames, holes, through_dtype=True)
        on_progress(0.8)
        x = _to_unit(frames).to(self.dtype)
        filled, left = self._propagate(x, _mask_tensor(st.masks[index]).to(self.dtype), flows)
        for j, i in enumerate(index):
            st.replaced[i] = filled[j]
            st.masks[i] = (left[j, 0] > 0).numpy()  # compared in torch: numpy has no bfloat16
        on_progress(1.0)

    @torch.no_grad()
    def propagate_images(
        self, st: _Stages, flows: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames with propagated pixels in the holes [T, 3, h, w] (host, `dtype`) and the holes left, bool [T, h, w]."""
        frames = self._frames_at(st, 0, len(st.frames))
        filled, left = self._propagate(frames, _mask_tensor(st.masks).to(self.dtype), flows)
        return filled, left[:, 0] > 0

    def windows(self, length: int) -> list[tuple[list[int], list[int]]]:
        """(neighbour ids, reference ids) of each generator window, in order."""
        stride = max(1, self.neighbor_length // 2)
        limit = self.subvideo_length // self.ref_stride if length > self.subvideo_length else -1
        out = []
        for f in range(0, length, stride):
            neighbors = list(range(max(0, f - stride), min(length, f + stride + 1)))
            out.append((neighbors, reference_indices(f, neighbors, length, self.ref_stride, limit)))
        return out

    @torch.no_grad()
    def inpaint_windows(
        self, st: _Stages, updated: torch.Tensor, updated_masks: np.ndarray,
        flows: tuple[torch.Tensor, torch.Tensor], on_progress: Callable[[float], None] = lambda f: None,
    ) -> np.ndarray:
        """Run the generator on every window and compose its output into the frames (uint8 [T, h, w, 3])."""
        t = len(st.frames)
        comp: list[Optional[np.ndarray]] = [None] * t
        plan = self.windows(t)
        for w_i, (neighbors, refs) in enumerate(plan):
            ids = neighbors + refs
            pred = self.generator(
                updated[ids].unsqueeze(0).to(self.device),
                flows[0][neighbors[:-1]].unsqueeze(0).to(self.device),
                flows[1][neighbors[:-1]].unsqueeze(0).to(self.device),
                _mask_tensor(st.masks[ids]).unsqueeze(0).to(self.device, self.dtype),
                _mask_tensor(updated_masks[ids]).unsqueeze(0).to(self.device, self.dtype),
                len(neighbors),
            )[0]
            compose_window(comp, prediction_to_uint8(pred), st.frames, st.holes, neighbors)
            on_progress((w_i + 1) / len(plan))
        return np.stack(comp)

    # ------------------------------------------------------------------ helpers

    def _check(self, frames: np.ndarray, masks: np.ndarray) -> None:
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be uint8 [T, H, W, 3], got {getattr(frames, 'dtype', type(frames))} "
                             f"{getattr(frames, 'shape', '')}")
        if not isinstance(masks, np.ndarray) or masks.shape != frames.shape[:3]:
            raise InputError(f"masks must be [T, H, W] = {frames.shape[:3]}, got {getattr(masks, 'shape', type(masks))}")
        if len(frames) == 0:
            raise InputError("the video has no frames")

    @staticmethod
    def _resize_back(frames: np.ndarray, masks: np.ndarray, comp: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """Resize the composed frames to the input size (bilinear, as released) and keep the input
        wherever the resized result does not depend on a filled pixel."""
        t, height, width = masks.shape
        out = frames.copy()
        for i in range(t):
            up = cv2.resize(comp[i], (width, height), interpolation=cv2.INTER_LINEAR)
            reach = cv2.resize(holes[i].astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR) > 0
            reach |= masks[i].astype(bool)
            out[i][reach] = up[reach]
        return out


class _Reporter:
    """Maps each stage's own fraction to "prior" reports in permille of the whole run."""

    def __init__(self, progress: ProgressFn):
        self.progress = progress
        self.starts, total = {}, 0.0
        for name, weight in STAGE_WEIGHTS.items():
            self.starts[name] = total
            total += weight
        self.total = total
        self.part(next(iter(STAGE_WEIGHTS)))(0.0)

    def part(self, name: str) -> Callable[[float], None]:
        start, weight, label = self.starts[name], STAGE_WEIGHTS[name], STAGE_LABELS[name]
        return lambda f: self.progress(
            Progress.permille(PRIOR, (start + weight * min(max(f, 0.0), 1.0)) / self.total, label)
        )

    def done(self, name: str) -> None:
        self.part(name)(1.0)
